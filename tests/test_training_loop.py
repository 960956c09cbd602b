"""The trainer's loop on small exact environments: what is stored, budgets, evaluation, noise,
solving, and every --resume flag."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ddpg.cli import main
from ddpg.config import ConfigError, load_config
from ddpg.replay import Batch
from ddpg.rundir import read_outcome
from ddpg.tracking import read_metrics
from ddpg.envs.factory import make_env
from ddpg.evaluation import EVAL_SEED_OFFSET, episode_seed, run_policy
from ddpg.checkpoint import agent_from_checkpoint, resolve_checkpoint
from ddpg.trainer import Trainer
from runs import PENDULUM, final_state
import test_trainer  # noqa: F401  (registers test/Countdown-v0: 5 steps, reward 1 a step)

SMALL_NETS = ["agent.actor_hidden=[16, 16]", "agent.critic_hidden=[16, 16]", "agent.batch_size=4",
              "train.tensorboard=false", "train.target_score=none"]


def config(*extra):
    return load_config(None, [*SMALL_NETS, *extra])


def test_envs_of_different_lengths_store_exactly_their_own_episode(tmp_path):
    trainer = Trainer(config("env.id=test/Lengths-v0", "env.num_envs=3", "agent.warmup_steps=100"), tmp_path)
    seed = episode_seed(0, 0)
    lengths = [2 + (seed + i) % 3 for i in range(3)]
    assert sorted(lengths) == [2, 3, 4]
    scores, _ = trainer.run_episode()
    assert scores.tolist() == lengths
    # Step by step, the envs still in their first episode, in order; nothing after an env's end.
    expected = [(t, length) for t in range(4) for length in lengths if t < length]
    n = len(expected)
    buffer = trainer.buffer
    assert len(buffer) == trainer.env_steps == n == sum(lengths)
    assert buffer.obs[:n].tolist() == [[t, length] for t, length in expected]
    assert buffer.next_obs[:n].tolist() == [[t + 1, length] for t, length in expected]
    assert buffer.terminated[:n].tolist() == [float(t + 1 == length) for t, length in expected]


def test_a_time_limit_cut_bootstraps_through_learn_and_a_termination_does_not(tmp_path):
    gamma = 0.5
    losses = {}
    for env_id, folder in (("test/Endless-v0", "cut"), ("test/Lengths-v0", "ended")):
        trainer = Trainer(config(f"env.id={env_id}", "env.num_envs=1", "agent.warmup_steps=100",
                                 f"agent.gamma={gamma}", "agent.critic_grad_clip=0"), tmp_path / folder)
        trainer.run_episode()
        b = trainer.buffer
        last = len(b) - 1
        at = slice(last, last + 1)
        assert b.terminated[last].item() == (folder == "ended")  # the cut is stored as not terminated
        agent = trainer.agent
        with torch.no_grad():
            agent.critic_target.head[-1].weight.zero_()
            agent.critic_target.head[-1].bias.fill_(1000.0)  # Q'(s', a') = 1000 everywhere
            q = agent.critic(b.obs[at], b.actions[at])
        batch = Batch(b.obs[at], b.actions[at], b.rewards[at], b.next_obs[at], b.terminated[at], b.horizon[at],
                      torch.ones(1), torch.tensor([last]))
        losses[folder] = (agent.learn(batch)["critic_loss"].item(), q.item())
    loss, q = losses["cut"]
    assert loss == pytest.approx((1 + gamma * 1000 - q) ** 2, rel=1e-5)
    loss, q = losses["ended"]
    assert loss == pytest.approx((1 - q) ** 2, rel=1e-5)


def test_each_env_has_its_own_noise_process_restarted_every_episode(tmp_path):
    sigma, theta = 0.1, 0.15
    trainer = Trainer(config("env.id=test/Countdown-v0", "env.num_envs=3", "agent.warmup_steps=100",
                             "agent.warmup_random=false", f"noise.sigma={sigma}", f"noise.theta={theta}"), tmp_path)
    rng = copy.deepcopy(trainer.noise.rng)
    for _ in range(2):
        trainer.run_episode()
    expected = []
    for _episode in range(2):
        x = np.zeros((3, 1))  # restarted at zero for every episode
        for _step in range(5):
            x = x - theta * x + sigma * rng.standard_normal((3, 1))
            expected.append(x.copy())
    actions = trainer.buffer.actions[:30]
    policy = torch.as_tensor(trainer.agent.act(trainer.buffer.obs[:30].numpy()))  # no learning yet
    np.testing.assert_allclose((actions - policy).numpy(), np.concatenate(expected), atol=1e-6)


def test_budgets_whichever_comes_first_ends_the_run(tmp_path):
    # Countdown: 5 steps an episode, 3 envs: 15 environment steps an episode.
    steps = Trainer(config("env.id=test/Countdown-v0", "env.num_envs=3", "train.episodes=none", "train.steps=31"),
                    tmp_path / "steps")
    steps.train(progress=False)
    assert (steps.episode, steps.env_steps) == (3, 45)  # the episode in progress is finished
    episodes = Trainer(config("env.id=test/Countdown-v0", "env.num_envs=3", "train.episodes=2", "train.steps=1000"),
                       tmp_path / "episodes")
    episodes.train(progress=False)
    assert (episodes.episode, episodes.env_steps) == (2, 30)
    assert read_outcome(tmp_path / "episodes") | {"wall_seconds": 0, "ended": ""} == {
        "status": "finished", "episode": 2, "env_steps": 30, "solved_at": None, "wall_seconds": 0, "ended": ""}
    assert read_metrics(tmp_path / "steps" / "metrics.csv")["env_steps"].tolist() == [15, 30, 45]
    assert [p.name for p in sorted((tmp_path / "steps" / "checkpoints").glob("*.pt"))] == ["episode_000003.pt"]


def test_every_resume_flag_is_honoured(tmp_path, capsys):
    run = tmp_path / "run"
    countdown = [*SMALL_NETS, "env.id=test/Countdown-v0", "env.num_envs=3", "--seed", "7", "--quiet"]
    assert main(["train", "--run-dir", str(run), *countdown, "--steps", "31"]) == 0
    assert final_state(run)["episode"] == 3
    assert main(["train", "--resume", str(run), "--steps", "60", "--seed", "7", "--quiet"]) == 0  # same seed: fine
    assert (final_state(run)["episode"], final_state(run)["env_steps"]) == (4, 60)
    assert main(["train", "--resume", str(run), "--episodes", "6", "--quiet"]) == 0
    state = final_state(run)
    assert state["episode"] == 6 and state["config"]["train"]["episodes"] == 6
    assert read_metrics(run / "metrics.csv")["episode"].tolist() == [1, 2, 3, 4, 5, 6]
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--seed", "8"]) == 2
    assert "train.seed: cannot change when resuming" in capsys.readouterr().err


def test_the_checkpoint_is_written_at_the_solve_episode(tmp_path):
    trainer = Trainer(config("env.id=test/Countdown-v0", "train.target_score=5", "train.window=2",
                             "train.checkpoint_every=100", "train.episodes=10"), tmp_path)
    assert trainer.train(progress=False) == 2  # every episode scores 5; the window is full at 2
    assert [p.name for p in (tmp_path / "checkpoints").glob("*.pt")] == ["episode_000002.pt"]
    assert final_state(tmp_path)["solved_at"] == 2
    assert read_outcome(tmp_path)["status"] == "solved"


def test_target_networks_stay_in_eval_mode_while_learning_and_after_resume(tmp_path):
    trainer = Trainer(config("env.id=test/Countdown-v0", "env.num_envs=4", "agent.batch_norm=true",
                             "agent.learn_every=1", "train.episodes=2"), tmp_path)
    before = [m.running_mean.clone() for m in trainer.agent.critic_target.modules()
              if isinstance(m, torch.nn.BatchNorm1d)]
    trainer.train(progress=False)
    agent = trainer.agent
    assert agent.updates > 0 and agent.actor.training and agent.critic.training
    assert not agent.actor_target.training and not agent.critic_target.training
    after = [m.running_mean for m in agent.critic_target.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert not torch.equal(before[0], after[0])  # they move, by the soft update only
    resumed = Trainer.resume(tmp_path).agent
    assert not resumed.actor_target.training and not resumed.critic_target.training


def pendulum(*extra):
    return load_config(None, [*PENDULUM, "train.episodes=3", *extra])


def test_evaluation_has_its_own_env_and_seeds_and_never_disturbs_training(tmp_path):
    plain = Trainer(pendulum(), tmp_path / "plain")
    plain.train(progress=False)
    evaluated = Trainer(pendulum("train.eval_every=1", "train.eval_episodes=2"), tmp_path / "evaluated")
    evaluated.train(progress=False)
    assert evaluated.scores == plain.scores  # training is exactly the same with evaluations between
    m = read_metrics(tmp_path / "evaluated" / "metrics.csv")
    assert np.isfinite(m["eval_score"]).all() and np.isnan(read_metrics(tmp_path / "plain" / "metrics.csv")["eval_score"]).all()
    env = make_env(evaluated.config.env)
    seed = evaluated.config.train.seed + EVAL_SEED_OFFSET
    assert run_policy(env, evaluated.agent.act, 2, seed).mean() == pytest.approx(m["eval_score"][-1])
    path, payload = resolve_checkpoint(tmp_path / "evaluated" / "checkpoints" / "best.pt")
    assert payload["buffer"] is None and payload["best_eval"] == m["eval_score"].max()
    best = agent_from_checkpoint(payload, env, path)
    assert run_policy(env, best.act, 2, seed).mean() == pytest.approx(m["eval_score"].max())


def test_evaluation_every_so_many_steps(tmp_path):
    trainer = Trainer(config("env.id=test/Countdown-v0", "env.num_envs=3", "train.episodes=6",
                             "train.eval_every_steps=40", "train.eval_episodes=1"), tmp_path)
    trainer.train(progress=False)
    m = read_metrics(tmp_path / "metrics.csv")
    assert m["episode"][np.isfinite(m["eval_score"])].tolist() == [3, 6]  # 45 and 90 steps pass 40 and 80
    assert [e[:2] for e in trainer.evals] == [[3, 45], [6, 90]]


def test_solving_on_evaluations(tmp_path):
    trainer = Trainer(config("env.id=test/Countdown-v0", "train.target_score=5", "train.solve_on=eval",
                             "train.eval_every=2", "train.eval_episodes=1", "train.episodes=10"), tmp_path)
    assert trainer.train(progress=False) == 2  # the first evaluation scores 5
    with pytest.raises(ConfigError, match='train.solve_on: "eval" needs evaluations'):
        config("train.solve_on=eval")


def test_prioritized_replay_in_the_trainer_updates_the_priorities_it_sampled(tmp_path):
    trainer = Trainer(load_config(None, [*PENDULUM, "replay.prioritized=true", "replay.alpha=1.0",
                                         "agent.warmup_steps=0"]), tmp_path / "run")
    drawn, updated = [], []
    sample, update = trainer.buffer.sample, trainer.buffer.update_priorities
    trainer.buffer.sample = lambda n: drawn.append(sample(n)) or drawn[-1]
    trainer.buffer.update_priorities = lambda i, td: updated.append((i.clone(), td.clone())) or update(i, td)
    trainer.train(progress=False)
    # 2 episodes x 200 steps, learning every 50 steps, 2 updates each time
    assert len(drawn) == len(updated) == 2 * 200 // 50 * 2
    for batch, (indices, td_errors) in zip(drawn, updated):
        assert torch.equal(batch.indices, indices) and (td_errors >= 0).all()
    latest = {}  # alpha 1: each leaf holds |TD error| + epsilon of its latest update
    for indices, td_errors in updated:
        latest.update(zip(indices.tolist(), td_errors.double().tolist()))
    index = np.array(list(latest))
    np.testing.assert_allclose(trainer.buffer.tree.leaves[index],
                               np.array(list(latest.values())) + trainer.config.replay.epsilon, rtol=1e-6)


def test_updates_per_episode_follow_the_learning_effort(tmp_path):
    """Countdown (20 envs): 5 steps an episode, every one scoring 5 = the target. Learning every step, 10
    updates a time: 50 updates in the first episode, at full effort; then at 0.2 of it, 2 a step: 10; at
    0.05, 0.5 a step, the fraction carried over: 2 (at steps 2 and 4); at 0.06, 0.6 a step: 3 (at steps 2,
    4 and 5, where five sums of 0.6 fall an ulp short of 3). With agent.effort_score=5.5 above the
    target, no episode reaches it: every update, every episode."""
    cases = ((0.2, [], 10), (0.05, [], 2), (0.06, [], 3), (0.2, ["agent.effort_score=5.5"], 50))
    for number, (floor, extra, per_episode) in enumerate(cases):
        trainer = Trainer(config("env.id=test/Countdown-v0", "agent.learn_every=1", "agent.updates_per_learn=10",
                                 "agent.effort=score", f"agent.effort_floor={floor}", "train.target_score=5",
                                 "train.window=100", "train.episodes=3", *extra), tmp_path / str(number))
        trainer.train(progress=False)
        updates = read_metrics(tmp_path / str(number) / "metrics.csv")["updates"]
        assert np.diff(updates, prepend=0).tolist() == [50, per_episode, per_episode]
