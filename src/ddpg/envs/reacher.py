"""The 20-arm Unity ML-Agents Reacher (Udacity build), re-created on MuJoCo with all arms in one model.

Observations and actions are in Unity's left-handed, y-up frame so they match the original one to
one; the MuJoCo model is right-handed and z-up. Unity (x, y, z) is MuJoCo (x, z, y): a mirror, so
every axial quantity (torque, angular velocity, quaternion vector part) changes sign on the way.
See docs/reacher.md for the figures and for where this departs from the PhysX original.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

try:
    from . import _reacher
except ImportError as err:  # a checkout whose C extension was never built
    raise ImportError("ddpg: the compiled Reacher physics (ddpg/envs/_reacher.c) is not built; "
                      "run `pip install -e .` (it needs a C compiler and the Python headers)") from err

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
ARM_REACH = ELBOW_OFFSET + HAND_OFFSET + HAND_RADIUS  # shoulder pivot to the farthest point of an arm

# How the scene looks: a floor just below the arms' reach, a sky, lights. Visual only: no geom takes
# part in contacts (all are disabled) and nothing here has mass, so the dynamics are those without it.
_SCENE_XML = f"""
  <visual>
    <quality offsamples="0"/>
    <headlight ambient=".3 .3 .3" diffuse=".3 .3 .3" specular=".1 .1 .1"/>
    <rgba fog=".85 .89 .94 1"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1=".4 .6 .85" rgb2=".85 .89 .94"
             width="32" height="192"/>
    <texture name="floor" type="2d" builtin="checker" rgb1=".82 .8 .76" rgb2=".74 .72 .68"
             width="64" height="64"/>
    <material name="floor" texture="floor" texrepeat="{1 / ARM_SPACING} {1 / ARM_SPACING}"
              texuniform="true"/>
  </asset>
  <worldbody>
    <geom type="plane" size="0 0 1" pos="0 0 {PIVOT_HEIGHT - ARM_REACH - 1}" material="floor"/>
    <light directional="true" pos="0 0 1" dir=".3 .4 -1" diffuse=".7 .7 .7" castshadow="false"/>
  </worldbody>"""

# Each arm's raw row, built by the compiled step: its 29 sensor values (see build_model_xml; the
# first three sensors are positions, taken relative to the arm's base), the goal (3), its speed (1)
# and the original's constant hand entry, (0, 0, 1) in MuJoCo's frame. Unity's observation takes,
# in its order, these entries with these signs: positions swap y and z; axial vectors (angular
# velocity, quaternion vector part) also change sign, the frames being mirrors.
_OBS_FROM = [0, 2, 1, 10, 12, 11, 9, 17, 19, 18, 23, 25, 24,  # link A
             3, 5, 4, 14, 16, 15, 13, 20, 22, 21, 26, 28, 27,  # link B
             29, 31, 30]  # goal; then the hand entry (3) and the goal speed (1)
_HAND_TRUE, _HAND_CONSTANT = [6, 8, 7], [33, 35, 34]
_OBS_SIGN = np.array([1, 1, 1, -1, -1, -1, 1, -1, -1, -1, 1, 1, 1] * 2 + [1] * 7, np.float64)
_STAGES = ("mj_fwdAcceleration", "mj_fwdPosition", "mj_fwdVelocity", "mj_sensorPos", "mj_sensorVel")


def _stage_addresses() -> tuple[int, ...]:
    """Addresses of the MuJoCo stages the compiled step calls, in the library the bindings loaded."""
    lib_dir = Path(mujoco.__file__).parent
    found = sorted(lib_dir.glob("libmujoco.*")) + sorted(lib_dir.glob("mujoco.dll"))
    if not found:
        raise RuntimeError(f"Reacher: no MuJoCo library (libmujoco.*) in {lib_dir}")
    lib = ctypes.CDLL(str(found[0]))
    return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in _STAGES)


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
    <geom type="sphere" size="0.5" pos="{x} {y} 0" rgba=".3 .3 .3 1"/>
    <body name="link_a_{i}" pos="{x} {y} {pivot}" quat="0 -1 0 0">
      <joint type="hinge" axis="1 0 0"/>
      <joint type="hinge" axis="0 1 0"/>
      <inertial pos="0 0 {a_com}" mass="1" diaginertia="{a_inertia}"/>
      <geom type="capsule" fromto="0 0 1.52 0 0 6.52" size="0.5" rgba=".2 .35 .7 1"/>
      <body name="link_b_{i}" pos="0 0 {elbow}">
        <joint type="hinge" axis="1 0 0"/>
        <joint type="hinge" axis="0 1 0"/>
        <inertial pos="0 0 {b_com}" mass="1" diaginertia="{b_inertia}"/>
        <geom type="capsule" fromto="0 0 0.5 0 0 5.5" size="0.5" rgba=".2 .35 .7 1"/>
        <geom type="sphere" size="{hand}" pos="0 0 {hand_at}" rgba="1 .55 .1 1"/>
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
      <geom type="sphere" size="{r}" rgba=".85 .25 .3 .35"/>
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
  <default><geom contype="0" conaffinity="0"/></default>{_SCENE_XML}
  <worldbody>{arms}{goals}
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
    I_world dw / dt; with the applied torque it reaches each hinge the link hangs from as its
    component along the hinge's axis (J_rot^T tau), and MuJoCo solves M qacc = qfrc.
    A decision (4 physics steps, the reward and the observation) runs in one call of the compiled
    `_reacher` module, which calls MuJoCo's own stages.
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
        self._sites = self.data.site_xpos.reshape(n, 2, 3)  # link B centre, hand
        hand = _HAND_TRUE if hand_observation else _HAND_CONSTANT
        links = slice(1, 2 * n + 1)
        d = self.data
        self._physics = _reacher.Physics(
            model=self.model, data=d, stages=_stage_addresses(),
            arrays=(d.ximat[links], d.cvel[links], d.xaxis, d.site_xpos, d.qpos, d.qvel,
                    d.qacc_smooth, d.qfrc_applied, d.sensordata, self.inertia, self.bases),
            gather=np.array(_OBS_FROM + hand + [32], np.int32), sign=_OBS_SIGN, arms=n,
            dt=PHYSICS_DT, steps=PHYSICS_STEPS_PER_DECISION, torque_scale=TORQUE_SCALE,
            drag=1.0 - ANGULAR_DRAG * PHYSICS_DT, joint_speed_guard=JOINT_SPEED_GUARD,
            orbit_radius=GOAL_ORBIT_RADIUS, goal_height=GOAL_HEIGHT)
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
        """Advance one decision with already-checked (N, 4) actions; returns (observation, reward).

        The reward is 0.01 for each physics step that ends with the hand within reward_distance of
        the goal; the goal turns by goal_step every physics step, before the physics moves.
        """
        obs, reward = np.empty((self.num_arms, OBS_SIZE), np.float32), np.empty(self.num_arms)
        self._physics.step(np.ascontiguousarray(actions, np.float64), self.goal_angle, self.goal_step,
                           MAX_ANGULAR_SPEED, self.reward_distance, obs, reward)
        self.decisions += 1
        return obs, reward

    def observation(self) -> np.ndarray:
        """The original's 33 numbers per arm, in Unity's frame, float32, shape (N, 33)."""
        obs = np.empty((self.num_arms, OBS_SIZE), np.float32)
        self._physics.observe(self.goal_angle, self.goal_step, obs)
        return obs

    def state_is_finite(self) -> bool:
        return bool(np.isfinite(self.data.qpos).all() and np.isfinite(self.data.qvel).all())


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
    """Offscreen rendering shared by both env classes, with the overlay's running score."""

    sim: ReacherSim
    _renderer = None
    _score: np.ndarray | None = None  # each arm's reward so far this episode

    def _setup_rendering(self, render_mode: str | None, width: int, height: int, overlay: bool):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"Reacher: render_mode must be None or 'rgb_array', got {render_mode!r}")
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"Reacher: width and height must be positive, got {width}x{height}")
        self.render_mode = render_mode
        self.overlay = bool(overlay)
        self._size = (int(width), int(height))

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from .render import Renderer  # here, so that training never loads it (nor Pillow)
            self._renderer = Renderer(self.sim, *self._size)
        text = None
        if self.overlay and self._score is not None:
            text = f"step {self.sim.decisions}/{EPISODE_DECISIONS}   mean score {self._score.mean():.2f}"
        return self._renderer.render(text)

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
                 width: int = 640, height: int = 480, overlay: bool = False):
        self._setup_rendering(render_mode, width, height, overlay)
        self.sim = ReacherSim(num_envs, goal_size, goal_speed, hand_observation)
        self.num_envs = self.sim.num_arms
        self.single_observation_space, self.single_action_space = _spaces()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        _apply_options(self.sim, options)
        self._needs_reset = False
        self._score = np.zeros(self.sim.num_arms)
        return self.sim.reset(self.np_random), {}

    def step(self, actions):
        actions = check_actions(actions, (self.num_envs, ACT_SIZE))
        n = self.num_envs
        if self._needs_reset:
            obs, _ = self.reset()
            return obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), {}
        obs, reward = self.sim.step(actions)
        self._score += reward
        truncated = np.full(n, self.sim.decisions >= EPISODE_DECISIONS)
        self._needs_reset = bool(truncated[0])
        return obs, reward, np.zeros(n, bool), truncated, {}




class ReacherEnv(_Rendering, gym.Env):
    """One arm of the same task, for the wider ecosystem (env checker, Stable-Baselines3, wrappers)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1 / (PHYSICS_DT * PHYSICS_STEPS_PER_DECISION)}
    reward_range = REWARD_RANGE

    def __init__(self, goal_size: float = 5.0, goal_speed: float = 1.0, hand_observation: bool = False,
                 render_mode: str | None = None, width: int = 640, height: int = 480,
                 overlay: bool = False):
        self._setup_rendering(render_mode, width, height, overlay)
        self.sim = ReacherSim(1, goal_size, goal_speed, hand_observation)
        self.observation_space, self.action_space = _spaces()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        _apply_options(self.sim, options)
        self._score = np.zeros(self.sim.num_arms)
        return self.sim.reset(self.np_random)[0], {}

    def step(self, action):
        obs, reward = self.sim.step(check_actions(action, (ACT_SIZE,))[None])
        self._score += reward
        return obs[0], float(reward[0]), False, self.sim.decisions >= EPISODE_DECISIONS, {}


