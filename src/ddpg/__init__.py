"""DDPG for continuous control, with a batched MuJoCo re-creation of the 20-arm Unity Reacher."""

import os

# Offscreen rendering on a machine without a display: EGL unless the user chose otherwise.
if "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")

from . import envs  # noqa: E402  (registers ddpg/Reacher-v0)

__all__ = ["envs"]
