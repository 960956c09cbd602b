"""The episode loop: act, store, learn; per-arm scores, trailing average, solve check, checkpoints.

A run lives in a run directory that it owns for its whole life (see rundir.py). Everything that can
fail on the configuration (values, memory, the environment's first step, a resumed checkpoint) is
checked before the first file is written.
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
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

from .agent import DDPG
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, ConfigError, EnvConfig, load_config, warnings_for
from .noise import Noise, noise_scale
from .replay import PrioritizedReplayBuffer, ReplayBuffer, SumTree
from .rundir import (BEST_CHECKPOINT, CHECKPOINTS, RunDirError, RunLock, claim_default, claim_new, contents,
                     read_config_file, write_config_file, write_outcome)
from .scores import solved_episode, trailing_average
from .tracking import METRICS_FILE, Tracker, repair_metrics, score_columns

CHECKPOINT_FORMAT = 2
# What a checkpoint must hold, and of which type, before any of it is used.
_PAYLOAD_TYPES = {"config": dict, "obs_dim": int, "act_dim": int, "episode": int, "steps": int,
                  "env_steps": int, "scores": list, "evals": list, "best_eval": (float, type(None)),
                  "wall_seconds": float,
                  "solved_at": (int, type(None)), "agent": dict, "buffer": (dict, type(None)),
                  "noise": dict, "rng": dict, "torch_rng": torch.Tensor, "python_rng": tuple}
# A resumed run keeps these: they shape the networks, the buffer, the environment or the seeds.
FIXED_ON_RESUME = ("env.id", "env.num_envs", "env.kwargs", "agent.actor_hidden", "agent.critic_hidden",
                   "agent.critic_action_layer", "agent.batch_norm", "agent.layer_norm", "agent.activation",
                   "agent.buffer_size", "replay.prioritized", "train.seed")
# Evaluations use the seeds of a run seed no training run can have (train.seed < 2**32).
EVAL_SEED_OFFSET = 2**32
# Generous memory per environment, to refuse absurd counts before building anything (the batched
# Reacher measured 60-120 KB per arm, a Gymnasium Pendulum 1-4 KB).
ENV_BYTES = 256 * 1024


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or action); the message says what and where."""


def episode_seed(seed: int, episode: int) -> int:
    """Each episode's environment seed, derived from the run's: a resumed run needs no env state."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def run_policy(env: gym.vector.VectorEnv, policy, episodes: int, seed: int,
               frames: list | None = None) -> np.ndarray:
    """Per-episode, per-env scores (episodes x envs) of `policy`; the first episode of each env
    counts, and episode e resets with episode_seed(seed, e)."""
    scores = np.zeros((episodes, env.num_envs))
    for e in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, e))
        active = np.ones(env.num_envs, bool)
        while active.any():
            if frames is not None:
                frames.append(env.render())
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            scores[e] += reward * active
            active &= ~(terminated | truncated)
    return scores


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(key: str, what: str, needed: int) -> None:
    """ConfigError naming `key` when `needed` bytes exceed what this machine can spare."""
    available = _available_memory()
    if available is not None and needed > 0.8 * available:
        gib = needed / 2**30
        size = f"{gib:,.1f}" if gib < 1e6 else f"{gib:.1e}"
        raise ConfigError(f"{key}: {what} need {size} GiB, more than this machine can spare "
                          f"({available / 2**30:.1f} GiB available)")


def memory_needed(config: Config, obs_dim: int, act_dim: int) -> tuple[int, int, int]:
    """(parameters, bytes of the networks, bytes of the replay buffer) of a run with this config."""
    with torch.device("meta"):  # sizes only: nothing is allocated
        shapes = DDPG(obs_dim, np.zeros(act_dim), np.ones(act_dim), config.agent)
    parameters = sum(p.numel() for net in (shapes.actor, shapes.critic) for p in net.parameters())
    # Local and target copies, gradients and Adam's two moments: five floats per parameter.
    networks = 5 * 4 * parameters
    # Checkpoints write the buffer without copying it, so it counts once; prioritized replay adds its tree.
    n = config.agent.buffer_size
    buffer = ReplayBuffer.bytes_needed(n, obs_dim, act_dim) + (SumTree.bytes_needed(n) if config.replay.prioritized else 0)
    return parameters, networks, buffer


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def make_env(config: EnvConfig, render_mode: str | None = None, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """The natively batched env where one is registered, else a SyncVectorEnv, with next-step autoreset;
    reset and stepped once (and rendered, if asked) so that a bad setting fails here, in one line."""
    try:
        spec = gym.spec(config.id)
    except gym.error.Error as err:
        raise ConfigError(f"env.id: {err}") from None
    n = num_envs or config.num_envs
    check_memory("env.num_envs", f"{n} environments", n * ENV_BYTES)
    kwargs = dict(config.kwargs, **({"render_mode": render_mode} if render_mode else {}))
    try:
        if spec.vector_entry_point is not None:
            env = gym.make_vec(config.id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
        else:
            env = gym.make_vec(config.id, num_envs=n, vectorization_mode="sync",
                               vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP}, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"env.id: {config.id} needs a package that is missing: {_first_line(err)}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"env.kwargs: {config.id} refused {config.kwargs}: {_first_line(err)}") from None
    space = env.single_action_space
    if not isinstance(space, gym.spaces.Box) or not np.isfinite(space.low).all() or not np.isfinite(space.high).all():
        raise ConfigError(f"env.id: {config.id} needs a bounded continuous (Box) action space, has {space}")
    if len(env.single_observation_space.shape) != 1:
        raise ConfigError(f"env.id: {config.id} needs flat observations, has shape {env.single_observation_space.shape}")
    try:
        env.reset(seed=0)  # every episode resets with its own seed, so this leaves no trace
        env.step(env.action_space.sample())
        if render_mode:
            env.render()
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"env.id: {config.id} needs a package that is missing: {_first_line(err)}") from None
    except Exception as err:  # the environment's own code, run with the user's settings
        raise ConfigError(f"env.kwargs: {config.id} failed on its first step with {config.kwargs} "
                          f"({type(err).__name__}: {_first_line(err)})") from None
    return env


# -- checkpoints of a run directory ----------------------------------------------------------------
def checkpoint_files(run_dir: Path) -> list[Path]:
    """The run's checkpoints, newest first."""
    return sorted((run_dir / CHECKPOINTS).glob("episode_*.pt"), reverse=True)


def read_checkpoint(path: Path) -> dict:
    """A verified checkpoint whose contents are all there and of the right kinds."""
    payload = load_checkpoint(path)
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload['format']!r}; this ddpg reads format "
                              f"{CHECKPOINT_FORMAT}")
    for key, kind in _PAYLOAD_TYPES.items():
        if key not in payload:
            raise CheckpointError(f"{path}: incomplete checkpoint (no {key!r})")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is a {type(payload[key]).__name__})")
    if len(payload["scores"]) != payload["episode"]:
        raise CheckpointError(f"{path}: damaged checkpoint ({len(payload['scores'])} episode scores for "
                              f"{payload['episode']} episodes)")
    try:
        load_config(base=payload["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its saved config is invalid ({err})") from None
    return payload


def newest_checkpoint(run_dir: Path) -> tuple[Path, dict, list[str]] | None:
    """The newest checkpoint that verifies, with a note for each newer one that did not (those are
    renamed *.damaged, kept but never picked again); None if the run has no checkpoint at all."""
    notes = []
    for path in checkpoint_files(run_dir):
        try:
            return path, read_checkpoint(path), notes
        except CheckpointError as err:
            notes.append(f"skipping {err}")
    if notes:
        raise CheckpointError(f"{run_dir}: no usable checkpoint ({'; '.join(notes)})")
    return None


def resolve_checkpoint(target: str | Path) -> tuple[Path, dict]:
    """A checkpoint file, or the newest checkpoint of a run directory, verified; a damaged newest one
    is refused, naming the newest one that verifies."""
    path = Path(target)
    if path.is_dir():
        files = checkpoint_files(path)
        if not files:
            raise CheckpointError(f"{path}: no checkpoint yet in {path / CHECKPOINTS}")
        try:
            return files[0], read_checkpoint(files[0])
        except CheckpointError as err:
            good = next((f for f in files[1:] if _usable(f)), None)
            raise CheckpointError(f"{err}; " + (f"the newest that verifies is {good}" if good else
                                                "no older checkpoint verifies either")) from None
    return path, read_checkpoint(path)


def run_config(run_dir: Path) -> Config:
    """A run's config: its config.json, else (when that is missing or damaged) its newest checkpoint's."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    try:
        return load_config(base=read_config_file(run_dir))
    except (RunDirError, ConfigError) as err:
        found = newest_checkpoint(run_dir) if checkpoint_files(run_dir) else None
        if found is None:
            raise RunDirError(f"{run_dir / 'config.json'}: {err}" if isinstance(err, ConfigError) else str(err)) from None
        print(f"{err}; using the config of {found[0]}")
        return load_config(base=found[1]["config"])


def _usable(path: Path) -> bool:
    try:
        read_checkpoint(path)
        return True
    except CheckpointError:
        return False


def agent_from_checkpoint(payload: dict, env: gym.vector.VectorEnv, path: Path,
                          config: Config | None = None) -> DDPG:
    """The checkpoint's agent (built per `config`, else the checkpoint's own), after checking it was
    made for this env's observation and action sizes."""
    obs_dim = env.single_observation_space.shape[0]
    act_dim = env.single_action_space.shape[0]
    if (payload["obs_dim"], payload["act_dim"]) != (obs_dim, act_dim):
        raise CheckpointError(
            f"{path}: made for observations of size {payload['obs_dim']} and actions of size "
            f"{payload['act_dim']}; this environment has {obs_dim} and {act_dim}")
    config = config or load_config(base=payload["config"])
    agent = DDPG(obs_dim, env.single_action_space.low, env.single_action_space.high, config.agent)
    try:
        agent.load_state_dict(payload["agent"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: networks do not fit the configuration ({_first_line(err)})") from None
    return agent


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "kwargs":
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: Config, new: Config) -> dict[str, tuple]:
    """{key: (old, new)} for every field that differs."""
    a, b = _flat(old.to_dict()), _flat(new.to_dict())
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


class Trainer:
    """One run: `Trainer(config, run_dir)` starts a new one (run_dir missing or empty; None: a new
    runs/<env>-<time> folder); `Trainer.resume(run_dir)` continues one from its newest checkpoint."""

    def __init__(self, config: Config, run_dir: Path | None = None, *, runs_root: Path = Path("runs")):
        if run_dir is not None and contents(run_dir):
            claim_new(run_dir)  # refuses, saying why, before anything is built
        self._build(config)
        try:
            if run_dir is None:
                self.run_dir, self._lock = claim_default(runs_root, config.env.id.split("/")[-1].lower())
            else:
                self.run_dir, self._lock = run_dir, claim_new(run_dir)
        except BaseException:
            self.close_envs()
            raise

    @classmethod
    def resume(cls, run_dir: Path, overrides: list[str] = ()) -> Trainer:
        """Continue from the newest checkpoint that verifies (or from episode 0 when the run died before
        its first checkpoint), with `overrides` applied to the run's config; every check passes
        before anything in the run directory is written."""
        if not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: no such run directory")
        if not checkpoint_files(run_dir):  # a run killed before its first checkpoint starts over
            try:
                saved = load_config(base=read_config_file(run_dir))
            except (RunDirError, ConfigError) as err:
                reason = err if isinstance(err, RunDirError) else f"{run_dir / 'config.json'}: {err}"
                raise RunDirError(f"{run_dir}: nothing to resume: no checkpoint, and {reason}") from None
        lock = RunLock(run_dir)
        try:
            path = payload = None
            if found := newest_checkpoint(run_dir):
                path, payload, notes = found
                for note in notes:
                    print(f"resume: {note}")
                saved = load_config(base=payload["config"])
            config = load_config(base=saved.to_dict(), overrides=overrides)
            changes = config_changes(saved, config)
            for key in FIXED_ON_RESUME:
                if key in changes:
                    raise ConfigError(f"{key}: cannot change when resuming (the run has {changes[key][0]!r}, "
                                      f"asked for {changes[key][1]!r}); start a new run for that")
            episodes_done = payload["episode"] if payload else 0
            if config.train.episodes is not None and config.train.episodes < episodes_done:
                raise ConfigError(f"train.episodes: the run has done {episodes_done} episodes already; "
                                  f"ask for more to extend it, got {config.train.episodes}")
            steps_done = payload["env_steps"] if payload else 0
            if config.train.steps is not None and config.train.steps < steps_done:
                raise ConfigError(f"train.steps: the run has done {steps_done} environment steps already; "
                                  f"ask for more to extend it, got {config.train.steps}")
            self = cls.__new__(cls)
            self._build(config)
            self.run_dir, self._lock = run_dir, lock
            if payload:
                self._load(path, payload)
                for newer in checkpoint_files(run_dir):
                    if newer.name > path.name:  # skipped above as damaged: kept, but never picked again
                        newer.rename(newer.with_name(newer.name + ".damaged"))
        except BaseException:
            lock.release()
            raise
        where = f"from {path.name} (episode {self.episode})" if path else "from episode 0 (no checkpoint yet)"
        print(f"resuming {run_dir} {where}" + "".join(f"; {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        return self

    def _build(self, config: Config) -> None:
        self.config = c = config
        if c.train.wandb and importlib.util.find_spec("wandb") is None:
            raise ConfigError("train.wandb: wandb is not installed; pip install 'ddpg[wandb]'")
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        self.env = make_env(c.env)
        self.eval_env = None
        try:
            if c.train.eval_every or c.train.eval_every_steps:
                self.eval_env = make_env(c.env)  # its own instance: evaluating never disturbs training
            self._build_learner(c)
        except BaseException:
            self.close_envs()
            raise
        for warning in warnings_for(c):
            print(f"ddpg: warning: {warning}", file=sys.stderr)

    def _build_learner(self, c: Config) -> None:
        self.num_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        self.obs_dim, self.act_dim = obs_space.shape[0], act_space.shape[0]
        self.low, self.high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
        self._half_range = (self.high - self.low) / 2  # noise is in units of half the action range
        parameters, networks, buffer = memory_needed(c, self.obs_dim, self.act_dim)
        check_memory("agent.actor_hidden, agent.critic_hidden", f"networks of {parameters:,} parameters", networks)
        check_memory("agent.buffer_size", f"{c.agent.buffer_size:,} transitions",
                     buffer + networks)
        random.seed(c.train.seed)
        torch.manual_seed(c.train.seed)
        self.agent = DDPG(self.obs_dim, self.low, self.high, c.agent)
        if c.replay.prioritized:
            r = c.replay
            self.buffer = PrioritizedReplayBuffer(c.agent.buffer_size, self.obs_dim, self.act_dim, c.train.seed,
                                                  r.alpha, r.beta, r.beta_steps, r.epsilon)
        else:
            self.buffer = ReplayBuffer(c.agent.buffer_size, self.obs_dim, self.act_dim, seed=c.train.seed)
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
        self._stop_requested = 0

    @property
    def mean_scores(self) -> list[float]:
        return [float(np.mean(s)) for s in self.scores]

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self, with_buffer: bool = True) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "episode": self.episode, "steps": self.steps, "env_steps": self.env_steps, "scores": self.scores,
            "evals": self.evals, "best_eval": self.best_eval, "solved_at": self.solved_at,
            "wall_seconds": self.wall_seconds,
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict() if with_buffer and self.config.train.save_buffer else None,
            "noise": self.noise.state_dict(),
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def _load(self, path: Path, payload: dict) -> None:
        self.agent = agent_from_checkpoint(payload, self.env, path, self.config)
        if payload["buffer"] is not None:
            try:
                self.buffer.load_state_dict(payload["buffer"])
            except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as err:
                raise CheckpointError(f"{path}: its replay buffer does not fit this configuration "
                                      f"({_first_line(err)})") from None
        if tuple(payload["noise"].get("state", torch.empty(0)).shape) != (self.num_envs, self.act_dim):
            raise CheckpointError(f"{path}: its noise state is not one process per environment "
                                  f"({self.num_envs} x {self.act_dim})")
        try:
            self.noise.load_state_dict(payload["noise"])
            self.rng.bit_generator.state = payload["rng"]
            torch.set_rng_state(payload["torch_rng"])
            random.setstate(payload["python_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: damaged random-generator state ({_first_line(err)})") from None
        self.episode, self.steps, self.env_steps = payload["episode"], payload["steps"], payload["env_steps"]
        self.scores, self.solved_at = payload["scores"], payload["solved_at"]
        self.evals, self.best_eval = payload["evals"], payload["best_eval"]
        self.wall_seconds = payload["wall_seconds"]

    def save(self) -> Path:
        folder = self.run_dir / CHECKPOINTS
        folder.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(self.state_dict(), folder / f"episode_{self.episode:06d}.pt")
        periodic = sorted(folder.glob("episode_*.pt"))
        for old in periodic[:-self.config.train.keep_checkpoints]:
            old.unlink()
        return path

    # -- the loop ----------------------------------------------------------------------------
    def _actions(self, obs: np.ndarray, scale: float) -> np.ndarray:
        shape = (self.num_envs, self.act_dim)
        if self.steps < self.config.agent.warmup_steps and self.config.agent.warmup_random:
            return self.rng.uniform(self.low, self.high, shape)
        noise = scale * self.noise.sample() * self._half_range
        actions = self.agent.act(obs)
        if not np.isfinite(actions).all():
            raise TrainingError(f"the actor produced a non-finite action at step {self.steps} "
                                f"(episode {self.episode + 1})")
        return np.clip(actions + noise, self.low, self.high)

    def _learn(self) -> dict[str, float]:
        a = self.config.agent
        out = {}
        for _ in range(a.updates_per_learn):
            batch = self.buffer.sample(a.batch_size)
            out = self.agent.learn(batch)
            self.buffer.update_priorities(batch.indices, out["td_error"])
        losses = {k: float(out[k]) for k in ("critic_loss", "actor_loss", "q")} if out else {}
        bad = [k for k, v in losses.items() if not np.isfinite(v)]
        if bad:
            raise TrainingError(f"non-finite {bad[0]} at step {self.steps} (episode {self.episode + 1}, "
                                f"update {self.agent.updates})")
        return losses

    def run_episode(self) -> tuple[np.ndarray, dict[str, float]]:
        c = self.config
        trailing = trailing_average(self.mean_scores, c.train.window) if self.scores else None
        scale = noise_scale(c.noise, self.episode, trailing, c.train.target_score)
        obs, _ = self.env.reset(seed=episode_seed(c.train.seed, self.episode))
        self.noise.reset()
        active = np.ones(self.num_envs, bool)
        scores = np.zeros(self.num_envs)
        losses: list[dict[str, float]] = []
        while active.any():
            actions = self._actions(obs, scale)
            next_obs, rewards, terminated, truncated, _ = self.env.step(actions.astype(np.float32))
            # Only the first episode of each env counts; an env that ended early waits (autoreset
            # restarts it, and those steps are not stored).
            if active.all():
                self.buffer.add(obs, actions, rewards, next_obs, terminated)
            else:
                self.buffer.add(obs[active], actions[active], rewards[active], next_obs[active], terminated[active])
            scores += rewards * active
            self.env_steps += int(active.sum())
            active &= ~(terminated | truncated)
            self.steps += 1
            if (self.steps > c.agent.warmup_steps and self.steps % c.agent.learn_every == 0
                    and len(self.buffer) >= c.agent.batch_size):
                losses.append(self._learn())
            obs = next_obs
        summary = {k: float(np.mean([l[k] for l in losses])) for k in losses[0]} if losses else {}
        return scores, {"noise_scale": scale, **summary}

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
            folder = self.run_dir / CHECKPOINTS
            folder.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.state_dict(with_buffer=False), folder / BEST_CHECKPOINT)
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
                if self.solved_at or self.episode % c.checkpoint_every == 0 or self.budget_spent() \
                        or self._stop_requested:
                    now = time.perf_counter()
                    self.wall_seconds += now - session
                    session = now
                    checkpoint = self.save()
                if on_episode is not None:
                    on_episode(row, checkpoint)
                if self._stop_requested:
                    bar.close()  # before printing, so the message is not drawn over
                    print(f"stopped by signal after episode {self.episode}; checkpoint written. "
                          f"Continue with: ddpg train --resume {self.run_dir}")
                    break
            outcome = {"status": "solved" if self.solved_at else "stopped" if self._stop_requested else "finished"}
        except Exception as err:
            outcome = {"status": "failed", "reason": f"{type(err).__name__}: {_first_line(err)}"}
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
