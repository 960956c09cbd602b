"""The Python API: `train` a run and `evaluate` a policy, as the command line does (it is a thin layer
over these), from a notebook or a script. `import ddpg` gives `ddpg.train`, `ddpg.evaluate`,
`ddpg.Policy` and `ddpg.make_env` (docs/api.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import Config, load_config
from .envs.factory import EnvSource, make_env
from .evaluation import EVAL_EPISODES, EVAL_SEED, run_policy
from .policy import Policy
from .trainer import Trainer


@dataclass
class Run:
    """A training run as it ended: its run directory, config, solve episode and scores."""
    path: Path
    config: Config
    solved_at: int | None  # the episode the target was reached at (None: not solved)
    episodes: int  # episodes done, over all sessions
    scores: list[float]  # each episode's score, the mean over its environments
    seconds: float  # this session's wall time

    @property
    def policy(self) -> Policy:
        """The run's trained policy (its policy.pt)."""
        return Policy.load(self.path)


def train(config: Config | str | Path | None = None, *, overrides: dict[str, Any] | list[str] | None = None,
          env: EnvSource | None = None, episodes: int | None = None, steps: int | None = None,
          seed: int | None = None, device: str | None = None, run_dir: str | Path | None = None,
          resume: str | Path | None = None, progress: bool = True,
          on_episode: Callable[[dict[str, float], Path | None], None] | None = None) -> Run:
    """Train a run, or with `resume` continue one, to its budget or its target.

    config: a Config, a TOML file, or None for the built-in defaults (the Reacher); overrides:
    {"agent.tau": 0.01} or ["agent.tau=0.01"]; env: an environment for the run instead of
    config.env.id (an Env, a VectorEnv, or a callable that makes one; a callable also makes the
    evaluation environment); episodes, steps: the budget (either alone is the run's only budget);
    seed, device: train.seed, train.device; run_dir: where the run's files go (default
    runs/<env>-<time>); progress: a progress bar and the closing line, as the command line prints them;
    on_episode(row, checkpoint): called after every episode with its metrics row and the checkpoint
    written after it (or None). Mistakes raise ConfigError (or RunDirError, CheckpointError) with one
    line naming the problem, before any file is written."""
    changes = list(overrides or []) if not isinstance(overrides, dict) else [f"{k}={_toml(v)}" for k, v in overrides.items()]
    if seed is not None:
        changes.append(f"train.seed={seed}")
    if device is not None:
        changes.append(f"train.device={device}")
    # A budget given alone is the run's only budget (on resume too: it replaces the old one).
    if episodes is not None:
        changes += [f"train.episodes={episodes}"] + (["train.steps=none"] if steps is None else [])
    if steps is not None:
        changes += [f"train.steps={steps}"] + (["train.episodes=none"] if episodes is None else [])
    if resume is not None:
        trainer = Trainer.resume(Path(resume), changes, env=env)
    else:
        base = config.to_dict() if isinstance(config, Config) else None
        loaded = load_config(None if isinstance(config, Config) else config, changes, base=base)
        trainer = Trainer(loaded, Path(run_dir) if run_dir is not None else None, env=env)
    start = time.perf_counter()
    solved = trainer.train(progress=progress, on_episode=on_episode)
    run = Run(trainer.run_dir, trainer.config, solved, trainer.episode, trainer.mean_scores, time.perf_counter() - start)
    if progress:
        from .plot import plot_run  # matplotlib, only when asked to show
        t = trainer.config.train
        plot_run(run.path, target=t.target_score, window=t.window, solved_at=solved)
        last = (f"last episode {run.scores[-1]:.2f}, trailing average {np.mean(run.scores[-t.window:]):.2f}"
                if run.scores else "no episode")
        outcome = f"solved at episode {solved}" if solved else f"not solved in {run.episodes} episodes"
        print(f"{outcome}; {last}; {run.seconds:.0f} s this session; run directory: {run.path}")
    return run


def evaluate(policy: Policy | str | Path, env: EnvSource | None = None, *, episodes: int = EVAL_EPISODES,
             seed: int = EVAL_SEED, num_envs: int | None = None) -> np.ndarray:
    """Scores (episodes x environments) of the deterministic policy: a Policy, or a run directory,
    checkpoint or policy file to load one from. env: an env id, Env, VectorEnv or a callable that
    makes one (default: the policy's own environment); seeds as `ddpg evaluate --seed`."""
    policy = policy if isinstance(policy, Policy) else Policy.load(policy)
    env = make_env(env if env is not None else policy.env_id, num_envs=num_envs)
    try:
        return run_policy(env, policy, episodes, seed)
    finally:
        env.close()


def _toml(value: Any) -> str:
    """A Python value as an override's value (TOML): none, true, 0.01, "text", [1, 2], {a = 1}."""
    import json
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else json.dumps(value)  # repr: TOML's inf and nan
