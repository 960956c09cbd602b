"""MuJoCo's offscreen rendering on an OpenGL context whose backend is chosen when something renders,
not when MuJoCo is imported: MUJOCO_GL's backend when it is set; else EGL on a Linux machine without
a display, and the platform's default elsewhere (CGL on macOS, GLFW on Windows and on a Linux desktop).
A backend that cannot start is one line naming MUJOCO_GL and what to install."""

from __future__ import annotations

import importlib
import os
import platform
import warnings

import mujoco
import numpy as np

from ...config import ConfigError, first_line

# MUJOCO_GL's values per platform, as MuJoCo reads them, and the module of MuJoCo's that makes each.
BACKENDS = {"Linux": ("egl", "osmesa", "glfw", "glx"), "Darwin": ("cgl", "glfw"), "Windows": ("glfw", "wgl")}
MODULES = {"egl": "mujoco.egl", "osmesa": "mujoco.osmesa", "glfw": "mujoco.glfw", "glx": "mujoco.glfw",
           "wgl": "mujoco.glfw", "cgl": "mujoco.cgl"}
INSTALL = {"egl": "on Debian or Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1 (or set MUJOCO_GL=osmesa, "
                  "with libosmesa6)",
           "osmesa": "on Debian or Ubuntu: apt-get install libosmesa6",
           "glfw": "pip install glfw, and a display (on a Linux machine without one: MUJOCO_GL=egl)",
           "glx": "pip install glfw, and a display", "wgl": "pip install glfw",
           "cgl": "macOS's OpenGL (or set MUJOCO_GL=glfw, with pip install glfw)"}


class RenderError(ConfigError):
    """Rendering cannot start; the message names MUJOCO_GL and what to install."""


def backend() -> tuple[str, str]:
    """(the backend, why it was chosen): MUJOCO_GL's, else this machine's default."""
    system = platform.system()
    valid = BACKENDS.get(system, ("glfw",))
    asked = os.environ.get("MUJOCO_GL", "").strip().lower()
    if asked:
        if asked not in valid:
            raise RenderError(f"MUJOCO_GL={asked}: not a rendering backend on {system}; use one of "
                              f"{', '.join(valid)}, or leave it unset")
        return asked, f"MUJOCO_GL={asked}"
    if system == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "egl", "MUJOCO_GL unset: EGL, as on every Linux machine without a display"
    default = "cgl" if system == "Darwin" else "glfw"
    return default, f"MUJOCO_GL unset: {default}, {system}'s default with a display"


def contexts(model: mujoco.MjModel, width: int, height: int) -> tuple:
    """A current OpenGL context of the chosen backend, for frames up to width x height, and MuJoCo's
    rendering context on it."""
    name, why = backend()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a backend's warnings (GLFW's) are its failures
            if MODULES[name] == "mujoco.glfw":
                # GLFW first on its own: MuJoCo's GLFW context, half made, fails again when collected.
                import glfw
                glfw.init()
            gl = importlib.import_module(MODULES[name]).GLContext(width, height)
            gl.make_current()
            return gl, mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150.value)
    except Exception as err:  # each backend fails in its own way: ImportError, OSError, GLFWError...
        raise RenderError(f"{why}: the {name} backend cannot start ({first_line(err)}); {INSTALL[name]}") from None


class Offscreen:
    """Frames of a model's scene, drawn into MuJoCo's offscreen buffer on a context of its own."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int, max_geom: int):
        self.context, self.mjr = contexts(model, width, height)
        self.scene = mujoco.MjvScene(model, maxgeom=max_geom)
        self.option = mujoco.MjvOption()
        self.rect = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self.mjr)
        self.pixels = np.empty((height, width, 3), np.uint8)

    def render(self, model: mujoco.MjModel, data: mujoco.MjData, camera: mujoco.MjvCamera) -> np.ndarray:
        self.context.make_current()
        mujoco.mjv_updateScene(model, data, self.option, None, camera, mujoco.mjtCatBit.mjCAT_ALL.value, self.scene)
        mujoco.mjr_render(self.rect, self.scene, self.mjr)
        mujoco.mjr_readPixels(self.pixels, None, self.rect, self.mjr)
        return np.flipud(self.pixels).copy()  # OpenGL's rows run bottom up

    def close(self) -> None:
        self.mjr.free()
        self.context.free()
