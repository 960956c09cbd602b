"""The loop: episodes of acting, storing and learning; per-arm scores, the trailing average and the
solve check; evaluations, signals, and checkpoints when due.

A run lives in a run directory that it owns for its whole life (rundir.py); resume.py decides where a
resumed run starts. Everything that can fail on the configuration (values, memory, the environment's
first step, a resumed checkpoint) is checked before the first file is written.
"""

from __future__ import annotations

import importlib.util
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from . import resume as resuming
from .agent import DDPG
from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, agent_from_checkpoint, write_checkpoint
from .config import Config, ConfigError, EnvConfig, first_line, warnings_for
from .envs.factory import EnvSource, env_name, make_env
from .evaluation import EVAL_SEED_OFFSET, episode_seed, run_policy
from .noise import Noise, noise_scale
from .policy import POLICY_FILE, Policy
from .replay import NStepReturns, PrioritizedReplayBuffer, ReplayBuffer
from .resources import check_run_memory, device, torch_threads
from .rundir import BEST_CHECKPOINT, claim_default, claim_new, contents, write_config_file, write_outcome
from .scores import learning_effort, solved_episode, trailing_average
from .tracking import METRICS_FILE, Tracker, repair_metrics, score_columns


LOSSES = ("critic_loss", "actor_loss", "q")  # what each learn call records, read once an episode


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or action); the message says what and where."""


class Trainer:
    """One run: `Trainer(config, run_dir)` starts a new one (run_dir missing or empty; None: a new
    runs/<env>-<time> folder); `Trainer.resume(run_dir)` continues one from its newest checkpoint.
    `env` (an Env, a VectorEnv, or a callable that makes one) replaces config.env.id; the run records
    its name as env.id."""

    def __init__(self, config: Config, run_dir: Path | None = None, *, runs_root: Path = Path("runs"),
                 env: EnvSource | None = None):
        if run_dir is not None and contents(run_dir):
            claim_new(run_dir)  # refuses, saying why, before anything is built
        self._build(config, strict_device=True, env=env)
        try:
            if run_dir is None:
                self.run_dir, self._lock = claim_default(runs_root, config.env.id.split("/")[-1].lower())
            else:
                self.run_dir, self._lock = run_dir, claim_new(run_dir)
        except BaseException:
            self.close_envs()
            raise

    @classmethod
    def resume(cls, run_dir: Path, overrides: list[str] = (), env: EnvSource | None = None) -> Trainer:
        """Continue a run where resume.plan says, with `overrides` applied to its config (and `env`,
        for a run made on an environment passed as an object)."""
        plan = resuming.plan(run_dir, overrides)
        try:
            self = cls.__new__(cls)
            # The saved device is where the run was made: absent here, the run goes on on the CPU.
            self._build(plan.config, strict_device="train.device" in plan.changes, env=env)
            self.run_dir, self._lock = run_dir, plan.lock
            if plan.payload:
                self._load(plan.checkpoint, plan.payload)
                plan.set_aside_damaged(run_dir)
        except BaseException:
            plan.lock.release()
            raise
        print(plan.describe(run_dir))
        return self

    def _build(self, config: Config, strict_device: bool, env: EnvSource | None = None) -> None:
        self.config = c = config
        if c.train.wandb and importlib.util.find_spec("wandb") is None:
            raise ConfigError("train.wandb: wandb is not installed; pip install 'ddpg[wandb]'")
        source = c.env if env is None else env
        evaluates = c.train.eval_every or c.train.eval_every_steps
        if evaluates and isinstance(source, (gym.Env, gym.vector.VectorEnv)):
            raise ConfigError("train.eval_every: evaluating as it trains needs an environment of its own; "
                              "pass env as a callable that makes one")
        # A callable is made env.num_envs times; an Env instance is one environment, a VectorEnv its own.
        count = None if isinstance(source, (gym.Env, gym.vector.VectorEnv)) else c.env.num_envs
        self.env = make_env(source, num_envs=count)
        if env is not None:  # the run records what it trains on
            c.env = EnvConfig(id=env_name(env, self.env), num_envs=self.env.num_envs)
        self.eval_env = None
        try:
            if evaluates:
                self.eval_env = make_env(source, num_envs=count)  # its own: evaluating never disturbs training
            self._build_learner(c, device(c.train.device, strict_device))
        except BaseException:
            self.close_envs()
            raise
        for warning in warnings_for(c):
            print(f"ddpg: warning: {warning}", file=sys.stderr)

    def _build_learner(self, c: Config, on: torch.device) -> None:
        self.device = on
        self.num_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        self.obs_dim, self.act_dim = obs_space.shape[0], act_space.shape[0]
        self.low, self.high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
        self._half_range = (self.high - self.low) / 2  # noise is in units of half the action range
        check_run_memory(c, self.obs_dim, self.act_dim, on)
        random.seed(c.train.seed)
        torch.manual_seed(c.train.seed)
        self.agent = DDPG(self.obs_dim, self.low, self.high, c.agent, device=on)
        if c.replay.prioritized:
            r = c.replay
            self.buffer = PrioritizedReplayBuffer(c.agent.buffer_size, self.obs_dim, self.act_dim, c.train.seed,
                                                  r.alpha, r.beta, r.beta_steps, r.epsilon, device=on)
        else:
            self.buffer = ReplayBuffer(c.agent.buffer_size, self.obs_dim, self.act_dim, seed=c.train.seed, device=on)
        self.n_step = NStepReturns(c.agent.n_step, c.agent.gamma, self.num_envs) if c.agent.n_step > 1 else None
        self.noise = Noise(c.noise, self.num_envs, self.act_dim, seed=c.train.seed + 1)
        self.rng = np.random.default_rng(c.train.seed + 2)  # warm-up actions
        self.episode = 0  # episodes completed
        self.steps = 0  # steps of all environments together
        self.env_steps = 0  # transitions taken: the steps of each environment within its episodes, summed
        self.scores: list[list[float]] = []  # per-episode, per-environment scores
        self.evals: list[list[float]] = []  # per evaluation: [episode, env steps, mean, std]
        self.best_eval: float | None = None
        self.solved_at: int | None = None
        self.wall_seconds = 0.0  # training time up to now, over all sessions (a kill loses its session's)
        self._chunks: list[dict] = []  # the row files of the buffer's last checkpoint (checkpoint.py)
        self._record: list[tuple[int, int, torch.Tensor]] = []  # this episode's learn calls: step, update, losses
        self._stop_requested = 0

    @property
    def mean_scores(self) -> list[float]:
        return [float(np.mean(s)) for s in self.scores]

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self, with_buffer: bool = True) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "device": str(self.device),
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "episode": self.episode, "steps": self.steps, "env_steps": self.env_steps, "scores": self.scores,
            "evals": self.evals, "best_eval": self.best_eval, "solved_at": self.solved_at,
            "wall_seconds": self.wall_seconds,
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict() | {"chunks": self._chunks}
            if with_buffer and self.config.train.save_buffer else None,
            "noise": self.noise.state_dict(),
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def _load(self, path: Path, payload: dict) -> None:
        self.agent = agent_from_checkpoint(payload, self.env, path, self.config, self.device)
        made_on = torch.device(payload.get("device", "cpu")).type
        if made_on != self.device.type:
            print(f"resume: made on {made_on}, continued on {self.device.type}: the networks and the buffer carry "
                  "over, but replay sampling goes on from a new random stream (exact resume needs the same device)")
        if payload["buffer"] is not None:
            try:
                self.buffer.load_state_dict(payload["buffer"])
            except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as err:
                raise CheckpointError(f"{path}: its replay buffer does not fit this configuration "
                                      f"({first_line(err)})") from None
            self._chunks = payload["buffer"].get("chunks", [])  # format 2: none, the next writes every row
        if tuple(payload["noise"].get("state", torch.empty(0)).shape) != (self.num_envs, self.act_dim):
            raise CheckpointError(f"{path}: its noise state is not one process per environment "
                                  f"({self.num_envs} x {self.act_dim})")
        try:
            self.noise.load_state_dict(payload["noise"])
            self.rng.bit_generator.state = payload["rng"]
            torch.set_rng_state(payload["torch_rng"])
            random.setstate(payload["python_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: damaged random-generator state ({first_line(err)})") from None
        self.episode, self.steps, self.env_steps = payload["episode"], payload["steps"], payload["env_steps"]
        self.scores, self.solved_at = payload["scores"], payload["solved_at"]
        self.evals, self.best_eval = payload["evals"], payload["best_eval"]
        self.wall_seconds = payload["wall_seconds"]

    def save(self) -> Path:
        payload = self.state_dict()
        buffer = self.buffer if payload["buffer"] is not None else None
        path = write_checkpoint(self.run_dir, payload, f"episode_{self.episode:06d}.pt",
                                keep=self.config.train.keep_checkpoints, buffer=buffer)
        if buffer is not None:
            self._chunks = payload["buffer"]["chunks"]  # the row files this checkpoint lists
        return path

    # -- the loop ----------------------------------------------------------------------------
    def _actions(self, obs: np.ndarray, scale: float) -> np.ndarray:
        shape = (self.num_envs, self.act_dim)
        if self.steps < self.config.agent.warmup_steps and self.config.agent.warmup_random:
            return self.rng.uniform(self.low, self.high, shape)
        noise = scale * self.noise.sample() * self._half_range
        actions = self.agent.act(obs)
        if not np.isfinite(actions).all():
            self._losses()  # a non-finite loss before it is the cause to name
            raise TrainingError(f"the actor produced a non-finite action at step {self.steps} "
                                f"(episode {self.episode + 1})")
        return np.clip(actions + noise, self.low, self.high)

    def _learn(self, effort: float) -> None:
        """`effort` x `updates_per_learn` updates, the fraction carried over from call to call (so that a
        low effort spreads its updates evenly over the episode). The last update's losses and Q stay
        where they were computed, in the episode's record with the step and the update count: nothing
        is read back to Python while the updates run (on a GPU that would wait for each update)."""
        a = self.config.agent
        self._credit += effort * a.updates_per_learn
        count = int(self._credit + 1e-9)  # ten credits of 0.1 sum to 0.9999999999999999: still one update
        self._credit -= count
        for _ in range(count):
            batch = self.buffer.sample(a.batch_size)
            out = self.agent.learn(batch)
            self.buffer.update_priorities(batch.indices, out["td_error"])
        if count:
            self._record.append((self.steps, self.agent.updates, torch.stack([out[k] for k in LOSSES])))

    def _losses(self) -> dict[str, float]:
        """The episode's record read back at once: the mean over its learn calls of each loss and of Q;
        TrainingError naming the first that was not finite, and where."""
        if not self._record:
            return {}
        values = torch.stack([losses for _, _, losses in self._record]).cpu().tolist()
        for (step, update, _), row in zip(self._record, values):
            bad = [k for k, v in zip(LOSSES, row) if not math.isfinite(v)]
            if bad:
                raise TrainingError(f"non-finite {bad[0]} at step {step} (episode {self.episode + 1}, update {update})")
        return {k: float(np.mean([row[i] for row in values])) for i, k in enumerate(LOSSES)}

    def _store(self, active, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """One step's transitions of the environments still in their first episode (an env that ended
        early waits: autoreset restarts it, and those steps are not stored); n-step ones when
        agent.n_step > 1."""
        if self.n_step is not None:
            ready = self.n_step.push(np.flatnonzero(active), obs[active], actions[active], rewards[active],
                                     next_obs[active], terminated[active], truncated[active])
            if ready:
                self.buffer.add(*(np.array(column) for column in zip(*ready)))
        elif active.all():
            self.buffer.add(obs, actions, rewards, next_obs, terminated)
        else:
            self.buffer.add(obs[active], actions[active], rewards[active], next_obs[active], terminated[active])

    def run_episode(self) -> tuple[np.ndarray, dict[str, float]]:
        c = self.config
        trailing = trailing_average(self.mean_scores, c.train.window) if self.scores else None
        scale = noise_scale(c.noise, self.episode, trailing, c.train.target_score)
        a = c.agent
        effort = 1.0 if a.effort == "constant" else learning_effort(
            self.mean_scores, c.train.target_score if a.effort_score is None else a.effort_score, c.train.window,
            a.effort_floor, a.effort_patience, a.effort_margin)
        obs, _ = self.env.reset(seed=episode_seed(c.train.seed, self.episode))
        self.noise.reset()
        active = np.ones(self.num_envs, bool)
        scores = np.zeros(self.num_envs)
        self._record, self._credit = [], 0.0
        while active.any():
            actions = self._actions(obs, scale)
            next_obs, rewards, terminated, truncated, _ = self.env.step(actions.astype(np.float32))
            self._store(active, obs, actions, rewards, next_obs, terminated, truncated)
            scores += rewards * active
            self.env_steps += int(active.sum())
            active &= ~(terminated | truncated)
            self.steps += 1
            if (self.steps > c.agent.warmup_steps and self.steps % c.agent.learn_every == 0
                    and len(self.buffer) >= c.agent.batch_size):
                self._learn(effort)
            obs = next_obs
        return scores, {"noise_scale": scale, **self._losses()}

    def _request_stop(self, signum, frame) -> None:
        self._stop_requested += 1
        if self._stop_requested > 1:
            raise KeyboardInterrupt  # a second signal: stop now; the last checkpoint stays as it was

    @property
    def done(self) -> bool:
        return self.solved_at is not None or self.budget_spent()

    def budget_spent(self) -> bool:
        t = self.config.train
        return ((t.episodes is not None and self.episode >= t.episodes)
                or (t.steps is not None and self.env_steps >= t.steps))

    def _evaluation_due(self, env_steps_before: int) -> bool:
        t = self.config.train
        return bool((t.eval_every and self.episode % t.eval_every == 0)
                    or (t.eval_every_steps and env_steps_before // t.eval_every_steps
                        < self.env_steps // t.eval_every_steps))

    def evaluate(self) -> np.ndarray:
        """Scores (episodes x envs) of the deterministic policy on the evaluation environment, with the
        same seeds at every evaluation, so that evaluations differ only by the policy."""
        t = self.config.train
        return run_policy(self.eval_env, self.agent.act, t.eval_episodes, t.seed + EVAL_SEED_OFFSET)

    def _after_evaluation(self, scores: np.ndarray) -> dict[str, float]:
        mean, std = float(scores.mean()), float(scores.mean(axis=1).std())
        self.evals.append([self.episode, self.env_steps, mean, std])
        if self.best_eval is None or mean > self.best_eval:
            self.best_eval = mean
            write_checkpoint(self.run_dir, self.state_dict(with_buffer=False), BEST_CHECKPOINT)
        t = self.config.train
        if t.solve_on == "eval" and t.target_score is not None and mean >= t.target_score:
            self.solved_at = self.episode
        return {"eval_score": mean, "eval_std": std}

    def train(self, progress: bool = True, on_episode=None) -> int | None:
        """Run until a budget is spent, the target is reached or a signal asks to stop; returns the solve
        episode (or None). `on_episode(row, checkpoint)` is called after every episode with its metrics
        row and the checkpoint written after it (or None). outcome.json says how the session ended."""
        c = self.config.train
        if self.done:  # a finished run resumed as it is: leave every file as it was
            print(f"{self.run_dir}: nothing to do ({'solved at episode %d' % self.solved_at if self.solved_at else 'its budget is spent'}); "
                  "extend it with --episodes or --steps")
            self.close()
            return self.solved_at
        try:
            write_config_file(self.run_dir, self.config.to_dict())
            note = repair_metrics(self.run_dir / METRICS_FILE, self.scores, c.window)
            if note:
                print(f"resume: {note}")
            tracker = Tracker(self.run_dir, self.config.to_dict(), c.tensorboard, c.wandb, self.episode)
        except BaseException:
            self.close()
            raise
        # Signals reach only the main thread; elsewhere (a Ray trial) whoever runs the thread stops it.
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        by_steps = c.episodes is None
        bar = tqdm(total=c.steps if by_steps else c.episodes, initial=self.env_steps if by_steps else self.episode,
                   disable=not progress, unit="step" if by_steps else "episode", dynamic_ncols=True)
        outcome: dict = {"status": "failed", "reason": "interrupted"}
        session = time.perf_counter()
        try:
            with torch_threads(c.threads):
                while not self.done:
                    start, steps0, env_steps0 = time.perf_counter(), self.steps, self.env_steps
                    scores, info = self.run_episode()
                    seconds = time.perf_counter() - start
                    self.scores.append(scores.tolist())
                    self.episode += 1
                    if c.target_score is not None and c.solve_on == "train":
                        self.solved_at = solved_episode(self.mean_scores, c.window, c.target_score)
                    row = {"episode": self.episode, "env_steps": self.env_steps,
                           **score_columns(self.scores, c.window), "seconds": seconds,
                           "steps_per_s": (self.steps - steps0) / seconds, "updates": self.agent.updates,
                           "critic_loss": math.nan, "actor_loss": math.nan, "q": math.nan,
                           "eval_score": math.nan, "eval_std": math.nan, **info}
                    if self._evaluation_due(env_steps0):
                        row |= self._after_evaluation(self.evaluate())
                    tracker.log(row)
                    bar.update(self.env_steps - env_steps0 if by_steps else 1)
                    bar.set_postfix(score=f"{row['score']:.2f}", avg=f"{row['trailing_avg']:.2f}",
                                    steps_s=f"{row['steps_per_s']:.0f}")
                    checkpoint = None
                    ends = bool(self.solved_at or self.budget_spent() or self._stop_requested)  # this session
                    if ends or self.episode % c.checkpoint_every == 0:
                        now = time.perf_counter()
                        self.wall_seconds += now - session
                        session = now
                        checkpoint = self.save()
                    if ends:  # the trained policy alone, kilobytes, beside the checkpoints
                        Policy.from_agent(self.agent, self.config.env.id).save(self.run_dir / POLICY_FILE)
                    if on_episode is not None:
                        on_episode(row, checkpoint)
                    if self._stop_requested:
                        bar.close()  # before printing, so the message is not drawn over
                        print(f"stopped by signal after episode {self.episode}; checkpoint written. "
                              f"Continue with: ddpg train --resume {self.run_dir}")
                        break
            outcome = {"status": "solved" if self.solved_at else "stopped" if self._stop_requested else "finished"}
        except Exception as err:
            outcome = {"status": "failed", "reason": f"{type(err).__name__}: {first_line(err)}"}
            raise
        finally:
            bar.close()
            tracker.close()
            for s, h in handlers.items():
                signal.signal(s, h)
            write_outcome(self.run_dir, outcome | {
                "episode": self.episode, "env_steps": self.env_steps, "solved_at": self.solved_at,
                "wall_seconds": self.wall_seconds + time.perf_counter() - session,
                "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self.close()
        return self.solved_at

    def close_envs(self) -> None:
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()

    def close(self) -> None:
        """Close the environments and give up the run directory."""
        self.close_envs()
        self._lock.release()
