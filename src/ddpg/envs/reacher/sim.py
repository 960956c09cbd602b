"""The Reacher's simulation: physics and task of N arms, batched, with no Gymnasium semantics."""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from .model import (ANGULAR_DRAG, GOAL_HEIGHT, GOAL_ORBIT_RADIUS, GOAL_RADIUS_PER_SIZE, HAND_CONSTANT, HAND_RADIUS,
                    HAND_TRUE, JOINT_SPEED_GUARD, MAX_ANGULAR_SPEED, OBS_FROM, OBS_SIGN, OBS_SIZE, PHYSICS_DT,
                    PHYSICS_STEPS_PER_DECISION, TORQUE_SCALE, arm_bases, build_model_xml)
from .physics import physics


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
    A decision (4 physics steps, the reward and the observation) is one call of physics.py's step."""

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
        hand = HAND_TRUE if hand_observation else HAND_CONSTANT
        links = slice(1, 2 * n + 1)
        d = self.data
        self._physics = physics(
            self.model, d,
            arrays=(d.ximat[links], d.cvel[links], d.xaxis, d.site_xpos, d.qpos, d.qvel,
                    d.qacc_smooth, d.qfrc_applied, d.sensordata, self.inertia, self.bases),
            gather=np.array(OBS_FROM + hand + [32], np.int32), sign=OBS_SIGN, arms=n,
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

