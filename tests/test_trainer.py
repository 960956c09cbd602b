"""The trainer, config, checkpoints and command line, on real environments."""

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from ddpg.cli import main
from ddpg.checkpoint import CheckpointError, agent_from_checkpoint, load_checkpoint, read_rows, save_checkpoint
from ddpg.config import ConfigError, load_config
from ddpg.envs.factory import make_env
from ddpg.evaluation import run_policy
from ddpg.trainer import Trainer


class CountdownEnv(gym.Env):
    """Terminates after `length` steps; reward 1 per step. For checking what the buffer stores."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length=5):
        self.length, self.t = length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.t, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, 1], np.float32), 1.0, self.t >= self.length, False, {}


gym.register("test/Countdown-v0", entry_point=CountdownEnv)

FAST = ["agent.actor_hidden=[32, 32]", "agent.critic_hidden=[32, 32]", "agent.batch_size=64",
        "train.tensorboard=false"]


def reacher_config(*extra):
    return load_config(None, [*FAST, "env.num_envs=2", "agent.learn_every=50",
                              "agent.updates_per_learn=2", "agent.buffer_size=10000", *extra])


def test_truncation_is_stored_as_not_terminated(tmp_path):
    trainer = Trainer(reacher_config(), tmp_path)
    scores, _ = trainer.run_episode()
    buffer = trainer.buffer
    assert len(buffer) == 2 * 1000 and buffer.terminated[:len(buffer)].sum() == 0
    # The last stored next-state is the final state of the episode, not a reset state.
    assert buffer.next_obs[len(buffer) - 1, 1] != -4.0
    np.testing.assert_allclose(scores, [buffer.rewards[i:2000:2].sum() for i in (0, 1)], rtol=1e-5)


def test_termination_is_stored_and_ends_that_envs_episode(tmp_path):
    trainer = Trainer(load_config(None, [*FAST, "env.id=test/Countdown-v0", "env.num_envs=3"]), tmp_path)
    scores, _ = trainer.run_episode()
    assert scores.tolist() == [5.0, 5.0, 5.0]
    assert len(trainer.buffer) == 15
    assert trainer.buffer.terminated[:15].tolist() == ([0.0] * 3 * 4 + [1.0] * 3)


def test_two_runs_with_one_seed_are_identical(tmp_path):
    def run(folder):
        trainer = Trainer(reacher_config("train.episodes=2", "train.seed=3"), tmp_path / folder)
        trainer.train(progress=False)
        return trainer
    a, b = run("a"), run("b")
    assert a.scores == b.scores and a.agent.updates == b.agent.updates > 0
    for p, q in zip(a.agent.state_dict()["actor"].values(), b.agent.state_dict()["actor"].values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    c = Trainer(reacher_config("train.episodes=1", "train.seed=4"), tmp_path / "c")
    c.train(progress=False)
    assert c.scores[0] != a.scores[0]


def test_checkpoint_round_trip_keeps_parameters_predictions_and_replay(tmp_path):
    trainer = Trainer(reacher_config("train.episodes=1"), tmp_path)
    trainer.train(progress=False)
    path = tmp_path / "checkpoints" / "episode_000001.pt"
    payload = load_checkpoint(path)
    env = make_env(trainer.config.env)
    agent = agent_from_checkpoint(payload, env, tmp_path)
    obs = np.random.default_rng(0).standard_normal((7, 33))
    np.testing.assert_array_equal(agent.act(obs), trainer.agent.act(obs))
    np.testing.assert_array_equal(read_rows(path, payload["buffer"]), trainer.buffer.storage[:len(trainer.buffer)].numpy())
    resumed = Trainer.resume(tmp_path)
    assert resumed.episode == 1 and resumed.scores == trainer.scores
    for p, q in zip(resumed.agent.critic_target.parameters(), trainer.agent.critic_target.parameters()):
        assert torch.equal(p, q)


def test_bad_checkpoints_are_refused_with_one_line(tmp_path):
    good = {"format": 1, "weights": torch.ones(3)}
    save_checkpoint(good, tmp_path / "good.pt")
    assert torch.equal(load_checkpoint(tmp_path / "good.pt")["weights"], torch.ones(3))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    save_checkpoint({"format": 1, "weights": torch.tensor([1.0, float("nan")])}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite value at /weights"):
        load_checkpoint(tmp_path / "nan.pt")

    class Exploit:
        def __reduce__(self):
            return (exec, ("open('" + str(tmp_path / "pwned") + "', 'w').write('x')",))
    torch.save({"format": 1, "x": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused so that nothing in it runs"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_for_another_env_is_refused(tmp_path):
    trainer = Trainer(load_config(None, [*FAST, "env.id=test/Countdown-v0", "train.episodes=1",
                                         "agent.batch_size=2"]), tmp_path / "run")
    trainer.train(progress=False)
    code = main(["evaluate", str(tmp_path / "run"), "--episodes", "1"])
    assert code == 0
    payload = load_checkpoint(next((tmp_path / "run" / "checkpoints").glob("*.pt")))
    with pytest.raises(CheckpointError, match="observations of size 2 and actions of size 1; this environment has 33 and 4"):
        agent_from_checkpoint(payload, make_env(load_config().env, num_envs=1), tmp_path)


@pytest.mark.parametrize("overrides, message", [
    (["agent.gama=0.9"], "agent.gama: unknown key"),
    (["agent.gamma=1.5"], r"agent.gamma: must be in \[0, 1\], got 1.5"),
    (["agent.gamma='high'"], "agent.gamma: expected float, got 'high'"),
    (["agent.batch_size=512", "agent.buffer_size=100"], "agent.buffer_size: 100 is smaller than agent.batch_size 512"),
    (["agent.actor_lr=0"], "agent.actor_lr: must be positive"),
    (["agent.batch_norm=1"], "agent.batch_norm: expected bool, got 1"),
    (["noise.kind=pink"], "noise.kind: must be one of 'ou', 'gaussian', got 'pink'"),
    (["agent.actor_hidden=[0]"], "agent.actor_hidden: need at least one layer"),
    (["agent.critic_action_layer=2"], r"agent.critic_action_layer: must be from 0 to 1 \(one less than the critic's 2 hidden layers\), got 2"),
    (["nonsense"], "an override looks like section.key=value"),
])
def test_config_mistakes_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_config_file_and_overrides_layer(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[agent]\ngamma = 0.9\nbatch_size = 64\n[train]\ntarget_score = \"none\"\n")
    config = load_config(path, ["agent.gamma=0.95"])
    assert (config.agent.gamma, config.agent.batch_size, config.train.target_score) == (0.95, 64, None)
    assert isinstance(load_config(None, ["agent.tau=1"]).agent.tau, float)
    path.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def test_built_in_defaults_are_the_tuned_reacher_config():
    # The same settings, but for three that are the shipped config's alone: compiling the update, a speed
    # choice with a start-up cost (short runs and tests start at once without it), and the learning
    # effort's and the noise's score schedules, measured on this task's target only (other tasks keep
    # every update and constant noise).
    own = ["agent.compile=false", "agent.effort=constant", "agent.effort_score=none", "noise.schedule=constant",
           "noise.floor=0"]
    assert load_config() == load_config("configs/reacher.toml", own)
    shipped = load_config("configs/reacher.toml")
    assert shipped.agent.compile and shipped.agent.effort == "score" and shipped.noise.schedule == "score"


def test_shipped_configs_load():
    from pathlib import Path
    names = sorted(p.stem for p in Path("configs").glob("*.toml"))
    assert {"reacher", "pendulum", "reacher-100", "reacher-1000", "reacher-writeup"} <= set(names)
    for name in names:
        load_config(f"configs/{name}.toml")


def test_cli_reports_mistakes_in_one_line(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "x"), "agent.gamma=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ddpg train: error: agent.gamma: must be in [0, 1], got 2.0"
    assert not (tmp_path / "x").exists()
    assert main(["evaluate", str(tmp_path / "nothing.pt")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "y"), "env.id=Nope-v9"]) == 2
    assert "env.id:" in capsys.readouterr().err


@pytest.mark.slow
def test_pendulum_learns_what_random_play_cannot(tmp_path):
    config = load_config("configs/pendulum.toml", [
        "agent.actor_hidden=[64, 64]", "agent.critic_hidden=[64, 64]", "agent.batch_size=128",
        "agent.warmup_steps=1000", "train.episodes=30", "train.target_score=none",
        "train.tensorboard=false"])
    trainer = Trainer(config, tmp_path)
    trainer.train(progress=False)
    env = make_env(config.env, num_envs=5)
    learned = run_policy(env, trainer.agent.act, 1, seed=99).mean()
    rng = np.random.default_rng(0)
    random = run_policy(env, lambda obs: rng.uniform(-2, 2, (5, 1)).astype(np.float32), 1, seed=99).mean()
    assert random < -900  # Pendulum's random play is about -1200
    assert learned > -400


@pytest.mark.slow
def test_reacher_short_run_learns_far_above_random(tmp_path):
    config = load_config(None, ["train.episodes=8", "train.tensorboard=false"])  # the built-in defaults
    trainer = Trainer(config, tmp_path)
    trainer.train(progress=False)
    env = make_env(config.env)
    learned = run_policy(env, trainer.agent.act, 1, seed=99).mean()
    assert learned > 2.0  # random play scores 0.16 (docs/reacher.md)
    assert np.mean(trainer.mean_scores[-3:]) > 2.0
    assert json.loads((tmp_path / "config.json").read_text())["env"]["num_envs"] == 20


def test_overrides_may_come_before_and_after_options(tmp_path):
    run = tmp_path / "run"
    code = main(["train", "agent.gamma=0.5", "--quiet", "--run-dir", str(run), "--episodes", "1",
                 *FAST, "env.id=test/Countdown-v0", "agent.batch_size=2", "agent.tau=0.5"])
    assert code == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["agent"]["gamma"], saved["agent"]["tau"], saved["train"]["episodes"]) == (0.5, 0.5, 1)
    with pytest.raises(SystemExit):
        main(["plot", str(run), "agent.gamma=0.5"])


@pytest.mark.parametrize("random_warmup", [True, False])
def test_warmup_learns_nothing_and_acts_as_configured(tmp_path, random_warmup):
    trainer = Trainer(load_config(None, [*FAST, "env.id=test/Countdown-v0", "env.num_envs=4",
                                         "agent.warmup_steps=3", f"agent.warmup_random={str(random_warmup).lower()}",
                                         "agent.batch_size=2", "agent.learn_every=1", "agent.updates_per_learn=1",
                                         "noise.sigma=0"]), tmp_path)
    initial = copy.deepcopy(trainer.agent)
    trainer.run_episode()  # 5 steps: learning starts after the 3 warm-up steps
    assert trainer.agent.updates == 2
    actions = trainer.buffer.actions[:12]  # the warm-up steps of all 4 envs
    policy = torch.as_tensor(initial.act(trainer.buffer.obs[:12].numpy()))
    if random_warmup:
        assert (actions - policy).abs().max() > 0.3  # uniform in [-1, 1], not the policy
    else:
        torch.testing.assert_close(actions, policy, rtol=0, atol=1e-7)  # the policy, noise 0
