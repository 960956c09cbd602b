"""The 20-arm Unity ML-Agents Reacher (Udacity build), re-created on MuJoCo with all arms in one model
(docs/reacher.md): its figures and model (model.py), its physics (physics.py, _physics.c), its
simulation (sim.py), its Gymnasium classes (env.py) and its renderer (render.py)."""

from .env import ReacherEnv, ReacherVectorEnv
from .sim import ReacherSim

__all__ = ["ReacherEnv", "ReacherSim", "ReacherVectorEnv"]
