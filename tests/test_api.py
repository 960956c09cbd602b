"""The Python API as docs/api.md documents it (public names only): train, load, act, evaluate, export;
user environments that Gymnasium never registered; bad environments and bad exports in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime
import pytest
import torch

import ddpg
from ddpg.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"agent.actor_hidden": [16, 16], "agent.critic_hidden": [16, 16], "agent.batch_size": 32,
         "agent.buffer_size": 4000, "agent.learn_every": 50, "agent.updates_per_learn": 2, "train.tensorboard": False,
         "train.target_score": None}


class Drift(gym.Env):
    """A user's environment, never registered: steer a point to the origin; 10 steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = self.np_random.uniform(-1, 1, 2).astype(np.float32), 0
        return self.x.copy(), {}

    def step(self, action):
        self.x, self.t = self.x + action, self.t + 1
        return self.x.copy(), -float(np.abs(self.x).sum()), False, self.t >= 10, {}


@pytest.fixture(scope="module")
def reacher(tmp_path_factory):
    """A 2-arm Reacher trained through the API, with batch norm (exports must carry it)."""
    folder = tmp_path_factory.mktemp("api")
    return ddpg.train(None, overrides={**SMALL, "env.num_envs": 2, "agent.batch_norm": True}, episodes=2, seed=4,
                      run_dir=folder / "reacher", progress=False)


def test_train_load_act_evaluate_and_export_with_the_documented_names(reacher, tmp_path):
    assert reacher.episodes == 2 and len(reacher.scores) == 2 and reacher.solved_at is None
    assert (reacher.path / "policy.pt").is_file() and (reacher.path / "config.json").is_file()
    policy = ddpg.Policy.load(reacher.path)
    one = policy.act(np.zeros(33, np.float32))
    batch = policy.act(np.zeros((5, 33), np.float32))
    assert one.shape == (4,) and batch.shape == (5, 4) and np.allclose(batch, one)
    assert np.abs(batch).max() <= 1.0  # already in the action bounds
    scores = ddpg.evaluate(policy, "ddpg/Reacher-v0", episodes=2, num_envs=3)
    assert scores.shape == (2, 3) and np.isfinite(scores).all()
    # The same policy from its checkpoint and from its policy file
    checkpoint = sorted((reacher.path / "checkpoints").glob("episode_*.pt"))[-1]
    for source in (checkpoint, reacher.path / "policy.pt"):
        np.testing.assert_array_equal(ddpg.Policy.load(source).act(np.ones((3, 33), np.float32)),
                                      policy.act(np.ones((3, 33), np.float32)))
    # Exported, run elsewhere: ONNX with onnxruntime, pt2 with torch.export.load; on random observations
    # and on those of a real episode, within 1e-5 of the torch actor.
    onnx = policy.export(tmp_path / "actor.onnx", "onnx")
    pt2 = policy.export(tmp_path / "actor.pt2", "pt2")
    session = onnxruntime.InferenceSession(str(onnx))
    program = torch.export.load(pt2).module()
    env = ddpg.make_env("ddpg/Reacher-v0", num_envs=2)
    episode, (obs, _) = [], env.reset(seed=0)
    for _ in range(1000):
        episode.append(obs)
        obs, *_ = env.step(policy.act(obs))
    observations = {"random": np.random.default_rng(0).standard_normal((1000, 33)).astype(np.float32) * 3,
                    "episode": np.concatenate(episode).astype(np.float32)}
    for name, x in observations.items():
        expected = policy.act(x)
        np.testing.assert_allclose(session.run(None, {"obs": x})[0], expected, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(program(torch.from_numpy(x)).numpy(), expected, atol=1e-5, err_msg=name)


def test_the_policy_file_is_small_and_holds_only_the_actor_and_what_it_needs(reacher):
    payload = torch.load(reacher.path / "policy.pt", weights_only=True)
    assert set(payload) == {"format", "actor", "architecture", "env_id"}
    assert payload["env_id"] == "ddpg/Reacher-v0"
    assert set(payload["architecture"]) == {"obs_dim", "act_dim", "low", "high", "hidden", "batch_norm", "layer_norm",
                                            "activation"}
    assert (reacher.path / "policy.pt").stat().st_size < 50_000


def test_a_users_own_environment_trains_without_registering_it(tmp_path):
    run = ddpg.train("configs/pendulum.toml", overrides={**SMALL, "agent.warmup_steps": 0, "env.num_envs": 3},
                     env=lambda: Drift(), episodes=3, run_dir=tmp_path / "run", progress=False)
    assert run.config.env.id == "Drift" and run.config.env.num_envs == 3 and run.episodes == 3
    policy = run.policy
    assert policy.env_id == "Drift" and policy.act(np.zeros(2, np.float32)).shape == (2,)
    assert np.abs(policy.act(np.ones((4, 2), np.float32) * 9)).max() <= 0.5  # Drift's bounds
    assert ddpg.evaluate(policy, Drift, episodes=2).shape == (2, 1)
    resumed = ddpg.train(resume=run.path, env=Drift, episodes=4, progress=False)  # resumed on it too
    assert resumed.episodes == 4 and resumed.scores[:3] == run.scores


class NoBox(Drift):
    action_space = gym.spaces.Discrete(3)


class Unbounded(Drift):
    action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


class Pictures(Drift):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


@pytest.mark.parametrize("env, message", [
    (NoBox, r"env.id: NoBox needs a bounded continuous \(Box\) action space, has Discrete\(3\)"),
    (Unbounded, r"env.id: Unbounded needs a bounded continuous \(Box\) action space"),
    (Pictures, r"env.id: Pictures needs flat observations, has shape \(8, 8, 3\)"),
])
def test_a_bad_environment_is_one_line_and_writes_nothing(env, message, tmp_path):
    with pytest.raises(ddpg.ConfigError, match=message) as raised:
        ddpg.train("configs/pendulum.toml", overrides=SMALL, env=env, episodes=1, run_dir=tmp_path / "run",
                   progress=False)
    assert len(str(raised.value).splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["export", "{tmp}", "--format", "onnx", "--out", "{tmp}/a.onnx"], "no checkpoint yet"),
    (["export", "{run}", "--format", "tflite", "--out", "{tmp}/a.x"], "--format: must be one of onnx, pt2, got 'tflite'"),
    (["export", "{run}", "--format", "pt2", "--out", "/proc/a.pt2"], "--out: /proc/a.pt2: cannot write in /proc"),
    (["export", "{run}", "--format", "pt2", "--out", "{tmp}/missing/a.pt2"], "no such folder"),
])
def test_bad_exports_are_one_line_and_write_nothing(args, message, reacher, tmp_path, capsys):
    code = main([a.format(tmp=tmp_path, run=reacher.path) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*.tmp"))


def test_import_ddpg_loads_nothing_heavy():
    code = "import sys, ddpg; print(sorted({'torch', 'ray', 'onnx'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.slow
def test_the_example_runs_as_it_is(tmp_path):
    done = subprocess.run([sys.executable, "examples/pendulum_api.py", str(tmp_path / "run")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported to" in done.stdout and (tmp_path / "run" / "pendulum.onnx").is_file()
    evaluation = float(done.stdout.split("evaluation: ")[1].split()[0])
    assert evaluation > -600  # random play: about -1200
