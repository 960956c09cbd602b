"""Environments: the Reacher shipped with ddpg, registered with Gymnasium when `ddpg` is imported,
and (factory.py) how every run makes its environments."""

import gymnasium as gym

from .reacher import ReacherEnv, ReacherVectorEnv

gym.register(
    id="ddpg/Reacher-v0",
    entry_point="ddpg.envs.reacher:ReacherEnv",
    vector_entry_point="ddpg.envs.reacher:ReacherVectorEnv",
)

__all__ = ["ReacherEnv", "ReacherVectorEnv"]
