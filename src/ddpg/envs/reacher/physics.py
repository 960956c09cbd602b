"""The per-decision physics of the Reacher, written in C (_physics.c) and called once per decision."""

from __future__ import annotations

import ctypes
from pathlib import Path

import mujoco

try:
    from . import _physics
except ImportError as err:  # a checkout whose C extension was never built
    raise ImportError("ddpg: the compiled Reacher physics (ddpg/envs/reacher/_physics.c) is not built; "
                      "run `pip install -e .` (it needs a C compiler and the Python headers)") from err

_STAGES = ("mj_fwdAcceleration", "mj_fwdPosition", "mj_fwdVelocity", "mj_sensorPos", "mj_sensorVel")


def _stage_addresses() -> tuple[int, ...]:
    """Addresses of the MuJoCo stages the compiled step calls, in the library the bindings loaded."""
    lib_dir = Path(mujoco.__file__).parent
    found = sorted(lib_dir.glob("libmujoco.*")) + sorted(lib_dir.glob("mujoco.dll"))
    if not found:
        raise RuntimeError(f"Reacher: no MuJoCo library (libmujoco.*) in {lib_dir}")
    lib = ctypes.CDLL(str(found[0]))
    return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in _STAGES)

