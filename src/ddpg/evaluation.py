"""Scores of a policy, episode by episode, with seeds derived from a run's so that they repeat."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

# Evaluations during training use the seeds of a run seed no training run can have (train.seed < 2**32).
EVAL_SEED_OFFSET = 2**32
# Evaluations from the command line: seeds no training episode used, and how many episodes.
EVAL_SEED = 10_000
EVAL_EPISODES = 5


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
