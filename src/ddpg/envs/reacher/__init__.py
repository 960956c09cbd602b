"""The 20-arm Unity ML-Agents Reacher (Udacity build), re-created on MuJoCo with all arms in one model
(docs/reacher.md): its figures and model (model.py), its physics (physics.py, _physics.c), its
simulation (sim.py), its Gymnasium classes (env.py) and its renderer (render.py, offscreen.py)."""

import os

# MuJoCo checks MUJOCO_GL when it is imported, though only rendering uses it: imported with it hidden,
# no training fails on a rendering setting (offscreen.py reads it when something renders).
_gl = os.environ.pop("MUJOCO_GL", None)
try:
    import mujoco  # noqa: F401
finally:
    if _gl is not None:
        os.environ["MUJOCO_GL"] = _gl

from .env import ReacherEnv, ReacherVectorEnv  # noqa: E402
from .sim import ReacherSim  # noqa: E402

__all__ = ["ReacherEnv", "ReacherSim", "ReacherVectorEnv"]
