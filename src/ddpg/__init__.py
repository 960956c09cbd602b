"""DDPG for continuous control, with a batched MuJoCo re-creation of the 20-arm Unity Reacher."""

from . import envs  # registers ddpg/Reacher-v0

__all__ = ["envs"]
