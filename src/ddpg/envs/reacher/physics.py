"""One Reacher decision (4 physics steps, the reward, the observation) in one call: compiled from
_physics.c where a C compiler built it, else the same physics in NumPy.

Each physics step, per link and before the joints are solved (PhysX's order): the applied torque's
impulse, the angular drag and the speed cap act on the link's unconstrained angular velocity. The
drag and cap change dw of each link enters the joint solve as the extra body torque I_world dw / dt;
with the applied torque it reaches each hinge the link hangs from as its component along the hinge's
axis (J_rot^T tau), and MuJoCo solves M qacc = qfrc. Both versions call MuJoCo's own stages.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import mujoco
import numpy as np

from .model import goal_positions

try:
    from . import _physics
except ImportError:  # no C compiler when ddpg was installed: the NumPy version stands in
    _physics = None

_STAGES = ("mj_fwdAcceleration", "mj_fwdPosition", "mj_fwdVelocity", "mj_sensorPos", "mj_sensorVel")
_warned = False


def _stage_addresses() -> tuple[int, ...] | str:
    """Addresses of the MuJoCo stages the compiled step calls, in the MuJoCo library of the version
    the bindings loaded; or why there is none (the compiled step would misread MuJoCo's structures
    with another version's library)."""
    lib_dir = Path(mujoco.__file__).parent
    wanted = mujoco.mj_versionString()
    found = []
    for path in sorted(lib_dir.glob("libmujoco*.so*")) + sorted(lib_dir.glob("libmujoco*.dylib")) + \
            sorted(lib_dir.glob("mujoco.dll")):
        try:
            lib = ctypes.CDLL(str(path))
            lib.mj_versionString.restype = ctypes.c_char_p
            version = library_version(lib)
        except (OSError, AttributeError):
            continue
        if version == wanted:
            return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in _STAGES)
        found.append(f"{path.name} is {version}")
    return (f"its MuJoCo library does not match the bindings' version {wanted} "
            f"({', '.join(found) or f'no libmujoco in {lib_dir}'})")


def library_version(lib: ctypes.CDLL) -> str:
    """The version a loaded MuJoCo library reports."""
    return lib.mj_versionString().decode()


def physics(model: mujoco.MjModel, data: mujoco.MjData, **settings):
    """The compiled physics where it is built and its MuJoCo matches; else the NumPy version, with one
    warning line per process saying why and what it costs."""
    global _warned
    stages = _stage_addresses() if _physics is not None else "it is not built (no C compiler at install?)"
    if not isinstance(stages, str):
        return _physics.Physics(model=model, data=data, stages=stages, **settings)
    if not _warned:
        print(f"ddpg: warning: the Reacher's compiled physics is unavailable: {stages}; it runs the same "
              "physics in NumPy, about 5 times slower per environment step (reinstall ddpg with a C compiler "
              "for the compiled one)", file=sys.stderr)
        _warned = True
    return NumpyPhysics(model, data, **settings)


class NumpyPhysics:
    """_physics.c's Physics in NumPy: the same arithmetic, arm by arm as arrays, and MuJoCo's stages
    called from Python (4 of them per physics step, where the C version calls them without Python)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, arrays: tuple, gather: np.ndarray,
                 sign: np.ndarray, arms: int, dt: float, steps: int, torque_scale: float, drag: float,
                 joint_speed_guard: float, orbit_radius: float, goal_height: float):
        ximat, cvel, xaxis, site_xpos, qpos, qvel, qacc, qfrc, sensordata, inertia, bases = arrays
        n = arms
        # Views into MjData's arrays, whose memory is fixed for the life of the MjData.
        self.model, self.data = model, data
        self.rotation, self.cvel = ximat.reshape(n, 2, 3, 3), cvel.reshape(n, 2, 6)
        self.axis, self.hands = xaxis.reshape(n, 4, 3), site_xpos.reshape(n, 2, 3)[:, 1]
        self.qpos, self.qvel, self.qacc, self.qfrc = qpos, qvel, qacc, qfrc.reshape(n, 4)
        self.sensordata, self.inertia, self.bases = sensordata.reshape(n, -1), inertia.reshape(n, 2, 3), bases
        self.gather, self.sign, self.arms, self.dt, self.steps = gather, sign, n, dt, steps
        self.torque_scale, self.drag, self.guard = torque_scale, drag, joint_speed_guard
        self.orbit_radius, self.goal_height = orbit_radius, goal_height

    def _joint_forces(self, actions: np.ndarray, max_speed: float) -> None:
        """Each link's torque plus what the drag and the cap remove from its unconstrained angular
        velocity, as joint forces along the hinges that carry the link."""
        r, dt = self.rotation, self.dt
        tau = np.zeros((self.arms, 2, 3))
        tau[..., :2] = -self.torque_scale * actions.reshape(self.arms, 2, 2)  # Unity (a0, 0, a1) is -(a0, a1, 0)
        # In the link's inertia frame: I w_unc = I w + tau dt.
        momentum = np.einsum("nkij,nki->nkj", r, self.cvel[..., :3]) * self.inertia \
            + np.einsum("nkij,nki->nkj", r, tau * dt)
        speed = np.sqrt(np.square(momentum * (1.0 / self.inertia)).sum(axis=-1))
        # Drag, then the cap, keep min(drag, cap / speed) of the momentum; what they remove is a torque.
        keep = max_speed / np.maximum(speed, max_speed / self.drag)
        total = tau + np.einsum("nkij,nkj->nki", r, momentum * ((keep - 1.0) / dt)[..., None])
        on = np.einsum("nhi,nki->nhk", self.axis, total)  # hinge h, link k
        self.qfrc[:, :2] = on[:, :2, 0] + on[:, :2, 1]  # link A's hinges carry both links
        self.qfrc[:, 2:] = on[:, 2:, 1]

    def step(self, actions, goal_angle, goal_step, max_speed, reward_distance, obs, reward) -> None:
        m, d = self.model, self.data
        actions = np.asarray(actions, np.float64).reshape(self.arms, 4)
        reward[:] = 0.0
        for k in range(1, self.steps + 1):
            self._joint_forces(actions, max_speed)
            mujoco.mj_fwdAcceleration(m, d)
            np.clip(self.qvel + self.dt * self.qacc, -self.guard, self.guard, out=self.qvel)
            self.qpos += self.dt * self.qvel
            mujoco.mj_fwdPosition(m, d)
            mujoco.mj_fwdVelocity(m, d)
            # 0.01 for each physics step that ends with the hand within reward_distance of the goal,
            # which turns by its speed every physics step.
            goal = goal_positions(goal_angle + goal_step * k, self.orbit_radius, self.goal_height)
            reward += np.linalg.norm(self.hands - self.bases - goal, axis=1) < reward_distance
        reward *= 0.01
        goal_angle += goal_step * self.steps
        self.observe(goal_angle, goal_step, obs)

    def observe(self, goal_angle, goal_step, obs) -> None:
        mujoco.mj_sensorPos(self.model, self.data)
        mujoco.mj_sensorVel(self.model, self.data)
        raw = np.zeros((self.arms, self.sensordata.shape[1] + 7))
        s = self.sensordata.shape[1]
        raw[:, :s] = self.sensordata
        raw[:, :9] -= np.tile(self.bases, 3)  # the first three sensors are positions
        raw[:, s:s + 3] = goal_positions(goal_angle, self.orbit_radius, self.goal_height)
        raw[:, s + 3] = goal_step
        raw[:, s + 6] = 1.0  # the original's constant hand entry, (0, 0, 1) in MuJoCo's frame
        obs[:] = (raw[:, self.gather] * self.sign).astype(np.float32)
