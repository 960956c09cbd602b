"""The episode loop: act, store, learn; per-arm scores, trailing average, solve check, checkpoints."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

from .agent import DDPG
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, ConfigError, EnvConfig, load_config
from .noise import Noise, noise_scale
from .replay import PrioritizedReplayBuffer, ReplayBuffer
from .tracking import Tracker

CHECKPOINT_FORMAT = 1
CONFIG_FILE = "config.json"


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or action); the message says what and where."""


def trailing_average(scores: list[float], window: int) -> float:
    """Mean of the last `window` episode scores (of all there are, when fewer)."""
    return float(np.mean(scores[-window:]))


def solved_episode(scores: list[float], window: int, target: float) -> int | None:
    """The first episode (1-based) at whose end a full window's average reaches `target`."""
    for end in range(window, len(scores) + 1):
        if np.mean(scores[end - window:end]) >= target:
            return end
    return None


def episode_seed(seed: int, episode: int) -> int:
    """Each episode's environment seed, derived from the run's: a resumed run needs no env state."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def make_env(config: EnvConfig, render_mode: str | None = None, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """The natively batched env where one is registered, else a SyncVectorEnv, with next-step autoreset."""
    try:
        spec = gym.spec(config.id)
    except gym.error.Error as err:
        raise ConfigError(f"env.id: {err}") from None
    kwargs = dict(config.kwargs, **({"render_mode": render_mode} if render_mode else {}))
    n = num_envs or config.num_envs
    try:
        if spec.vector_entry_point is not None:
            env = gym.make_vec(config.id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
        else:
            env = gym.make_vec(config.id, num_envs=n, vectorization_mode="sync",
                               vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP}, **kwargs)
    except TypeError as err:
        raise ConfigError(f"env.kwargs: {err}") from None
    space = env.single_action_space
    if not isinstance(space, gym.spaces.Box) or not np.isfinite(space.low).all() or not np.isfinite(space.high).all():
        raise ConfigError(f"env.id: {config.id} needs a bounded continuous (Box) action space, has {space}")
    if len(env.single_observation_space.shape) != 1:
        raise ConfigError(f"env.id: {config.id} needs flat observations, has shape {env.single_observation_space.shape}")
    return env


def latest_checkpoint(run_dir: Path) -> Path:
    found = sorted((run_dir / "checkpoints").glob("episode_*.pt"))
    if not found:
        raise CheckpointError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    return found[-1]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run directory."""
    path = Path(path)
    return latest_checkpoint(path) if path.is_dir() else path


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
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: networks do not fit the configuration ({str(err).splitlines()[0]})") from None
    return agent


class Trainer:
    def __init__(self, config: Config, run_dir: Path, resume: bool = False):
        self.config, self.run_dir = config, run_dir
        c = config
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        self.env = make_env(c.env)
        self.num_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        self.obs_dim, self.act_dim = obs_space.shape[0], act_space.shape[0]
        self.low, self.high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
        self._half_range = (self.high - self.low) / 2  # noise is in units of half the action range
        needed = ReplayBuffer.bytes_needed(c.agent.buffer_size, self.obs_dim, self.act_dim)
        available = _available_memory()
        if available is not None and needed > 0.8 * available:
            raise ConfigError(f"agent.buffer_size: {c.agent.buffer_size} transitions need "
                              f"{needed / 2**30:.1f} GiB, more than this machine can spare "
                              f"({available / 2**30:.1f} GiB available)")
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
        self.scores: list[list[float]] = []  # per-episode, per-environment scores
        self.solved_at: int | None = None
        if resume:
            self._load(latest_checkpoint(run_dir))
        self._stop_requested = 0

    @property
    def mean_scores(self) -> list[float]:
        return [float(np.mean(s)) for s in self.scores]

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "episode": self.episode, "steps": self.steps, "scores": self.scores, "solved_at": self.solved_at,
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict() if self.config.train.save_buffer else None,
            "noise": self.noise.state_dict(),
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def _load(self, path: Path) -> None:
        payload = load_checkpoint(path)
        self.agent = agent_from_checkpoint(payload, self.env, path, self.config)
        if payload["buffer"] is not None:
            try:
                self.buffer.load_state_dict(payload["buffer"])
            except (KeyError, RuntimeError) as err:
                raise CheckpointError(f"{path}: its replay buffer does not fit this configuration "
                                      f"(replay.prioritized, agent.buffer_size): {err}") from None
        self.noise.load_state_dict(payload["noise"])
        self.rng.bit_generator.state = payload["rng"]
        torch.set_rng_state(payload["torch_rng"])
        random.setstate(payload["python_rng"])
        self.episode, self.steps = payload["episode"], payload["steps"]
        self.scores, self.solved_at = payload["scores"], payload["solved_at"]

    def save(self) -> Path:
        folder = self.run_dir / "checkpoints"
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

    def train(self, progress: bool = True) -> int | None:
        c = self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2))
        tracker = Tracker(self.run_dir, self.config.to_dict(), c.tensorboard, c.wandb, self.episode)
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=c.episodes, initial=self.episode, disable=not progress, unit="episode", dynamic_ncols=True)
        try:
            while self.episode < c.episodes and self.solved_at is None:
                start, steps0 = time.perf_counter(), self.steps
                scores, info = self.run_episode()
                seconds = time.perf_counter() - start
                self.scores.append(scores.tolist())
                self.episode += 1
                trailing = trailing_average(self.mean_scores, c.window)
                if c.target_score is not None:
                    self.solved_at = solved_episode(self.mean_scores, c.window, c.target_score)
                row = {"episode": self.episode, "env_steps": self.steps * self.num_envs,
                       "score": scores.mean(), "score_std": scores.std(), "score_min": scores.min(),
                       "score_max": scores.max(), "trailing_avg": trailing, "seconds": seconds,
                       "steps_per_s": (self.steps - steps0) / seconds, "updates": self.agent.updates,
                       "critic_loss": np.nan, "actor_loss": np.nan, "q": np.nan, **info}
                tracker.log(row)
                bar.update(1)
                bar.set_postfix(score=f"{scores.mean():.2f}", avg=f"{trailing:.2f}",
                                steps_s=f"{row['steps_per_s']:.0f}")
                if self.solved_at or self.episode % c.checkpoint_every == 0 or self.episode == c.episodes \
                        or self._stop_requested:
                    self.save()
                if self._stop_requested:
                    bar.close()  # before printing, so the message is not drawn over
                    print(f"stopped by signal after episode {self.episode}; checkpoint written. "
                          f"Continue with: ddpg train --resume {self.run_dir}")
                    break
        finally:
            bar.close()
            tracker.close()
            for s, h in handlers.items():
                signal.signal(s, h)
            self.env.close()
        return self.solved_at


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
