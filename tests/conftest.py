import os

# MuJoCo picks its GL backend when first imported; tests render offscreen.
os.environ.setdefault("MUJOCO_GL", "egl")
