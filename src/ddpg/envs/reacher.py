"""The 20-arm Unity ML-Agents Reacher (Udacity build), re-created on MuJoCo with all arms in one model.

Observations and actions are in Unity's left-handed, y-up frame so they match the original one to
one; the MuJoCo model is right-handed and z-up. Unity (x, y, z) is MuJoCo (x, z, y): a mirror, so
every axial quantity (torque, angular velocity, quaternion vector part) changes sign on the way.
See docs/reacher.md for the figures and for where this departs from the PhysX original.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

PHYSICS_DT = 0.02
PHYSICS_STEPS_PER_DECISION = 4
EPISODE_DECISIONS = 1000
REWARD_PER_PHYSICS_STEP = 0.01  # for each physics step that ends with the hand in the goal
# (smallest, largest) reward of a decision, as Gymnasium's toy-text envs declare it.
REWARD_RANGE = (0.0, REWARD_PER_PHYSICS_STEP * PHYSICS_STEPS_PER_DECISION)
TORQUE_SCALE = 150.0
ANGULAR_DRAG = 0.05
MAX_ANGULAR_SPEED = 7.0
# Not in the original: without it the two-hinge model can run away near the hinges' lock-up pose
# (see docs/reacher.md); far above the speeds a sensible controller uses.
JOINT_SPEED_GUARD = 20.0
HAND_RADIUS = 1.0
GOAL_RADIUS_PER_SIZE = 0.5
GOAL_ORBIT_RADIUS = 8.0
GOAL_HEIGHT = -1.0
ARM_SPACING = 20.0
OBS_SIZE = 33
ACT_SIZE = 4

# Geometry in the links' own frames. Each link body is turned 180 degrees about x, so its local +z
# points down the hanging link, as the original's local frames do; the observed quaternion then
# reads (1, 0, 0, ~0) at rest exactly like the original's.
PIVOT_HEIGHT = 0.02
ELBOW_OFFSET = 7.02  # shoulder pivot to elbow pivot
LINK_B_CENTRE = 3.0  # elbow to link B's capsule centre
HAND_OFFSET = 6.0  # elbow to hand centre
LINK_A_COM = 4.02
LINK_B_COM = 4.455
LINK_A_INERTIA = (2.751, 2.751, 0.122)
LINK_B_INERTIA = (3.859, 3.859, 0.257)

# The per-arm sensor block (see build_model_xml) is followed by the goal (3), its speed (1) and
# the original's constant hand entry, (0, 0, 1) in MuJoCo's frame. Unity's observation takes, in
# its order, these entries with these signs: positions swap y and z; axial vectors (angular
# velocity, quaternion vector part) also change sign, the frames being mirrors.
_SENSORS = 29
_OBS_FROM = [0, 2, 1, 10, 12, 11, 9, 17, 19, 18, 23, 25, 24,  # link A
             3, 5, 4, 14, 16, 15, 13, 20, 22, 21, 26, 28, 27,  # link B
             29, 31, 30]  # goal; then the hand entry (3) and the goal speed (1)
_HAND_TRUE, _HAND_CONSTANT = [6, 8, 7], [33, 35, 34]
_OBS_SIGN = np.array([1, 1, 1, -1, -1, -1, 1, -1, -1, -1, 1, 1, 1] * 2 + [1] * 7)


def arm_bases(num_arms: int) -> np.ndarray:
    """Base positions (MuJoCo frame) of `num_arms` arms on a near-square grid, ARM_SPACING apart."""
    cols = math.ceil(math.sqrt(num_arms))
    idx = np.arange(num_arms)
    bases = np.zeros((num_arms, 3))
    bases[:, 0] = (idx % cols - (cols - 1) / 2) * ARM_SPACING
    bases[:, 1] = (idx // cols - (math.ceil(num_arms / cols) - 1) / 2) * ARM_SPACING
    return bases


def build_model_xml(num_arms: int, goal_size: float = 5.0) -> str:
    """MJCF text of `num_arms` independent arms; goals are mocap bodies used only for rendering."""
    arm = """
    <geom type="sphere" size="0.5" pos="{x} {y} 0" rgba=".5 .5 .5 1"/>
    <body name="link_a_{i}" pos="{x} {y} {pivot}" quat="0 -1 0 0">
      <joint type="hinge" axis="1 0 0"/>
      <joint type="hinge" axis="0 1 0"/>
      <inertial pos="0 0 {a_com}" mass="1" diaginertia="{a_inertia}"/>
      <geom type="capsule" fromto="0 0 1.52 0 0 6.52" size="0.5" rgba=".2 .4 .8 1"/>
      <body name="link_b_{i}" pos="0 0 {elbow}">
        <joint type="hinge" axis="1 0 0"/>
        <joint type="hinge" axis="0 1 0"/>
        <inertial pos="0 0 {b_com}" mass="1" diaginertia="{b_inertia}"/>
        <geom type="capsule" fromto="0 0 0.5 0 0 5.5" size="0.5" rgba=".2 .4 .8 1"/>
        <geom type="sphere" size="{hand}" pos="0 0 {hand_at}" rgba=".9 .6 .1 1"/>
        <site name="link_b_centre_{i}" pos="0 0 {b_centre}"/>
        <site name="hand_{i}" pos="0 0 {hand_at}"/>
      </body>
    </body>"""
    # Everything the observation needs, computed by MuJoCo in C: positions (link A's centre of mass,
    # link B's capsule centre, hand), orientations, angular velocities and centre-of-mass velocities.
    sensors = """
    <framepos objtype="body" objname="link_a_{i}"/>
    <framepos objtype="site" objname="link_b_centre_{i}"/>
    <framepos objtype="site" objname="hand_{i}"/>
    <framequat objtype="xbody" objname="link_a_{i}"/>
    <framequat objtype="xbody" objname="link_b_{i}"/>
    <frameangvel objtype="xbody" objname="link_a_{i}"/>
    <frameangvel objtype="xbody" objname="link_b_{i}"/>
    <framelinvel objtype="body" objname="link_a_{i}"/>
    <framelinvel objtype="body" objname="link_b_{i}"/>"""
    goal = """
    <body mocap="true" pos="{x} {y} {z}">
      <geom type="sphere" size="{r}" rgba=".1 .9 .1 .35"/>
    </body>"""
    bases = arm_bases(num_arms)
    arms = "".join(
        arm.format(
            i=i,
            x=x,
            y=y,
            pivot=PIVOT_HEIGHT,
            a_com=LINK_A_COM,
            a_inertia=" ".join(map(str, LINK_A_INERTIA)),
            elbow=ELBOW_OFFSET,
            b_com=LINK_B_COM,
            b_inertia=" ".join(map(str, LINK_B_INERTIA)),
            hand=HAND_RADIUS,
            hand_at=HAND_OFFSET,
            b_centre=LINK_B_CENTRE,
        )
        for i, (x, y, _) in enumerate(bases)
    )
    goals = "".join(
        goal.format(x=x, y=y + GOAL_ORBIT_RADIUS, z=GOAL_HEIGHT, r=goal_size * GOAL_RADIUS_PER_SIZE)
        for x, y, _ in bases
    )
    return f"""<mujoco model="reacher{num_arms}">
  <option timestep="{PHYSICS_DT}" gravity="0 0 -9.81">
    <flag contact="disable" constraint="disable"/>
  </option>
  <default><geom contype="0" conaffinity="0"/></default>
  <visual>
    <quality offsamples="0"/>
    <headlight ambient=".35 .35 .35" diffuse=".6 .6 .6"/>
    <global offwidth="1920" offheight="1080"/>
  </visual>
  <worldbody>
    <light pos="0 0 60" dir="0 0 -1" directional="true"/>{arms}{goals}
  </worldbody>
  <sensor>{"".join(sensors.format(i=i) for i in range(num_arms))}
  </sensor>
</mujoco>"""


def check_actions(actions: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Actions as float64 clipped to [-1, 1]; a wrong shape or a non-finite value raises ValueError."""
    a = np.asarray(actions, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"Reacher: actions must have shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("Reacher: actions contain NaN or Inf")
    return np.clip(a, -1.0, 1.0)


class ReacherSim:
    """Physics and task of N arms, batched; no Gymnasium semantics (those are in the env classes).

    Each physics step, per link and before the joints are solved (PhysX's order): the applied
    torque's impulse, the angular drag and the 7 rad/s cap act on the link's unconstrained angular
    velocity. The drag and cap change dw of each link enters the joint solve as the extra body torque
    I_world dw / dt, which MuJoCo maps into joint space as M^-1 J_rot^T I_world dw.
    """

    def __init__(self, num_arms: int = 20, goal_size: float = 5.0, goal_speed: float = 1.0,
                 hand_observation: bool = False):
        if int(num_arms) < 1:
            raise ValueError(f"Reacher: num_arms must be at least 1, got {num_arms}")
        self.num_arms = n = int(num_arms)
        self.goal_size = float(goal_size)
        self.goal_speed = float(goal_speed)
        self.model = mujoco.MjModel.from_xml_string(build_model_xml(n, goal_size))
        self.data = mujoco.MjData(self.model)
        self.bases = arm_bases(n)
        self.inertia = self.model.body_inertia[1:2 * n + 1].reshape(n, 2, 3).copy()
        # Views into MuJoCo's arrays, so the hot loop allocates little.
        links = slice(1, 2 * n + 1)
        self._ximat = self.data.ximat[links].reshape(n, 2, 3, 3)
        self._xipos = self.data.xipos[links].reshape(n, 2, 3)
        self._cvel = self.data.cvel[links].reshape(n, 2, 6)
        self._link_torque = self.data.xfrc_applied[links, 3:].reshape(n, 2, 3)
        self._sites = self.data.site_xpos.reshape(n, 2, 3)  # link B centre, hand
        self._inverse_inertia = 1.0 / self.inertia
        self._drag = 1.0 - ANGULAR_DRAG * PHYSICS_DT
        self._raw = np.zeros((n, 36))
        self._raw[:, 35] = 1.0
        hand = _HAND_TRUE if hand_observation else _HAND_CONSTANT
        self._gather = np.array(_OBS_FROM + hand + [32])
        self.goal_angle = np.zeros(n)  # degrees
        self.goal_step = np.zeros(n)  # degrees per physics step
        self.decisions = 0

    @property
    def reward_distance(self) -> float:
        return self.goal_size * GOAL_RADIUS_PER_SIZE + HAND_RADIUS

    def set_goal_size(self, goal_size: float) -> None:
        self.goal_size = float(goal_size)
        self.model.geom_size[-self.num_arms:, 0] = goal_size * GOAL_RADIUS_PER_SIZE

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        mujoco.mj_resetData(self.model, self.data)
        self.goal_angle = rng.integers(0, 360, self.num_arms).astype(np.float64)
        self.goal_step = rng.uniform(-1.0, 1.0, self.num_arms) * self.goal_speed
        self.decisions = 0
        mujoco.mj_fwdPosition(self.model, self.data)
        mujoco.mj_fwdVelocity(self.model, self.data)
        return self.observation()

    def goal_positions(self, angle: np.ndarray) -> np.ndarray:
        """Goal centres relative to the bases, MuJoCo frame, for goal angles in degrees (any shape)."""
        rad = np.radians(angle)
        return np.stack([GOAL_ORBIT_RADIUS * np.sin(rad), GOAL_ORBIT_RADIUS * np.cos(rad),
                         np.full_like(rad, GOAL_HEIGHT)], axis=-1)

    def hand_positions(self) -> np.ndarray:
        """Hand centres relative to the bases, MuJoCo frame, shape (N, 3)."""
        return self._sites[:, 1] - self.bases

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance one decision with already-checked (N, 4) actions; returns (observation, reward)."""
        m, d, rot, inertia = self.model, self.data, self._ximat, self.inertia
        # Unity torque (a0, 0, a1) on link A is MuJoCo torque -(a0, a1, 0): the frames are mirrors.
        torque = np.zeros((self.num_arms, 2, 3))
        torque[:, :, :2] = -TORQUE_SCALE * actions.reshape(-1, 2, 2)
        # Row 0: each link's angular velocity, row 1: its torque impulse; both turned into the
        # link's inertia frame by one batched product.
        rows = np.empty((self.num_arms, 2, 2, 3))
        rows[:, :, 1] = torque * PHYSICS_DT
        hands = np.empty((PHYSICS_STEPS_PER_DECISION, self.num_arms, 3))
        for k in range(PHYSICS_STEPS_PER_DECISION):
            rows[:, :, 0] = self._cvel[..., :3]
            local = rows @ rot
            momentum = local[:, :, 0] * inertia + local[:, :, 1]  # I w_unc = I w + tau dt
            velocity = momentum * self._inverse_inertia
            speed = np.sqrt(np.einsum("nki,nki->nk", velocity, velocity))
            # Angular drag, then the cap on the unconstrained speed keep min(drag, cap / speed) of
            # the momentum; what they remove, (keep - 1) I w_unc / dt, goes to the joint solve.
            keep = MAX_ANGULAR_SPEED / np.maximum(speed, MAX_ANGULAR_SPEED / self._drag)
            correction = rot @ (momentum * ((keep - 1.0) / PHYSICS_DT)[..., None])[..., None]
            np.add(torque, correction[..., 0], out=self._link_torque)
            mujoco.mj_fwdAcceleration(m, d)
            d.qvel += PHYSICS_DT * d.qacc_smooth
            np.clip(d.qvel, -JOINT_SPEED_GUARD, JOINT_SPEED_GUARD, out=d.qvel)
            d.qpos += PHYSICS_DT * d.qvel
            mujoco.mj_fwdPosition(m, d)
            mujoco.mj_fwdVelocity(m, d)
            np.subtract(self._sites[:, 1], self.bases, out=hands[k])
        angles = self.goal_angle + self.goal_step * np.arange(1, PHYSICS_STEPS_PER_DECISION + 1)[:, None]
        self.goal_angle = angles[-1]
        inside = np.linalg.norm(hands - self.goal_positions(angles), axis=-1) < self.reward_distance
        self.decisions += 1
        return self.observation(), REWARD_PER_PHYSICS_STEP * inside.sum(axis=0)

    def observation(self) -> np.ndarray:
        """The original's 33 numbers per arm, in Unity's frame, float32, shape (N, 33)."""
        mujoco.mj_sensorPos(self.model, self.data)
        mujoco.mj_sensorVel(self.model, self.data)
        raw = self._raw
        raw[:, :_SENSORS] = self.data.sensordata.reshape(self.num_arms, _SENSORS)
        raw[:, :9].reshape(-1, 3, 3)[:] -= self.bases[:, None]
        raw[:, 29:32] = self.goal_positions(self.goal_angle)
        raw[:, 32] = self.goal_step
        return (raw[:, self._gather] * _OBS_SIGN).astype(np.float32)

    def state_is_finite(self) -> bool:
        return bool(np.isfinite(self.data.qpos).all() and np.isfinite(self.data.qvel).all())


class Renderer:
    """Offscreen RGB frames of all arms and their goals, from a camera that frames the whole grid."""

    def __init__(self, sim: ReacherSim, width: int = 640, height: int = 480):
        self.sim = sim
        self._renderer = mujoco.Renderer(sim.model, height, width)
        span = np.ptp(sim.bases[:, :2], axis=0).max() + 2 * (GOAL_ORBIT_RADIUS + 4)
        self.camera = mujoco.MjvCamera()
        self.camera.lookat[:] = (0.0, 0.0, -5.0)
        self.camera.distance = span + 10
        self.camera.azimuth = 90.0
        self.camera.elevation = -25.0

    def render(self) -> np.ndarray:
        sim = self.sim
        sim.data.mocap_pos[:] = sim.bases + sim.goal_positions(sim.goal_angle)
        mujoco.mj_kinematics(sim.model, sim.data)  # places the mocap goals; arm state is unchanged
        self._renderer.update_scene(sim.data, camera=self.camera)
        return self._renderer.render()

    def close(self) -> None:
        self._renderer.close()


def _spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    obs = gym.spaces.Box(-np.inf, np.inf, (OBS_SIZE,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (ACT_SIZE,), np.float32)
    return obs, act


def _apply_options(sim: ReacherSim, options: dict | None) -> None:
    options = dict(options or {})
    if "goal_size" in options:
        sim.set_goal_size(options.pop("goal_size"))
    if "goal_speed" in options:
        sim.goal_speed = float(options.pop("goal_speed"))
    if options:
        raise ValueError(f"Reacher: unknown reset options {sorted(options)}; "
                         "known: goal_size, goal_speed")


class _Rendering:
    """Offscreen rendering shared by both env classes; the renderer is made on first use."""

    sim: ReacherSim
    render_mode: str | None
    _size: tuple[int, int]
    _renderer: Renderer | None = None

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = Renderer(self.sim, *self._size)
        return self._renderer.render()

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class ReacherVectorEnv(_Rendering, VectorEnv):
    """N arms in one MuJoCo model, stepped by one call. All arms start and end episodes together.

    Autoreset follows Gymnasium's next-step mode: the step after a truncation resets all arms.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1 / (PHYSICS_DT * PHYSICS_STEPS_PER_DECISION),
                "autoreset_mode": AutoresetMode.NEXT_STEP}
    reward_range = REWARD_RANGE

    def __init__(self, num_envs: int = 20, goal_size: float = 5.0, goal_speed: float = 1.0,
                 hand_observation: bool = False, render_mode: str | None = None,
                 width: int = 640, height: int = 480):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"Reacher: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.sim = ReacherSim(num_envs, goal_size, goal_speed, hand_observation)
        self.num_envs = self.sim.num_arms
        self.single_observation_space, self.single_action_space = _spaces()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self._size = (width, height)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        _apply_options(self.sim, options)
        self._needs_reset = False
        return self.sim.reset(self.np_random), {}

    def step(self, actions):
        actions = check_actions(actions, (self.num_envs, ACT_SIZE))
        n = self.num_envs
        if self._needs_reset:
            obs, _ = self.reset()
            return obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), {}
        obs, reward = self.sim.step(actions)
        truncated = np.full(n, self.sim.decisions >= EPISODE_DECISIONS)
        self._needs_reset = bool(truncated[0])
        return obs, reward, np.zeros(n, bool), truncated, {}




class ReacherEnv(_Rendering, gym.Env):
    """One arm of the same task, for the wider ecosystem (env checker, Stable-Baselines3, wrappers)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1 / (PHYSICS_DT * PHYSICS_STEPS_PER_DECISION)}
    reward_range = REWARD_RANGE

    def __init__(self, goal_size: float = 5.0, goal_speed: float = 1.0, hand_observation: bool = False,
                 render_mode: str | None = None, width: int = 640, height: int = 480):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"Reacher: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.sim = ReacherSim(1, goal_size, goal_speed, hand_observation)
        self.observation_space, self.action_space = _spaces()
        self.render_mode = render_mode
        self._size = (width, height)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        _apply_options(self.sim, options)
        return self.sim.reset(self.np_random)[0], {}

    def step(self, action):
        obs, reward = self.sim.step(check_actions(action, (ACT_SIZE,))[None])
        return obs[0], float(reward[0]), False, self.sim.decisions >= EPISODE_DECISIONS, {}


