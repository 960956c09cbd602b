"""A hand-written Reacher controller that reads only the observation and the arm's geometry.

It proves the task is solvable and the reward wired right, and gives `ddpg demo` something to show.
It works in Unity's frame, where the usual formulas (v = w x r, tau = r x F) hold because the
observed angular velocities and the actions are the original's axial vectors.
"""

from __future__ import annotations

import numpy as np

from .reacher.model import ELBOW_OFFSET, HAND_OFFSET, LINK_B_CENTRE, LINK_B_COM, PIVOT_HEIGHT, TORQUE_SCALE

GRAVITY = np.array([0.0, -9.81, 0.0])
PIVOT = np.array([0.0, PIVOT_HEIGHT, 0.0])


def hand_state(obs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Shoulder-to-elbow vector, elbow-to-hand vector, elbow, hand position and hand velocity."""
    link_a_dir = obs[:, 0:3] - PIVOT
    link_a_dir /= np.linalg.norm(link_a_dir, axis=1, keepdims=True)
    elbow = PIVOT + ELBOW_OFFSET * link_a_dir
    link_b_dir = (obs[:, 13:16] - elbow) / LINK_B_CENTRE
    hand = elbow + HAND_OFFSET * link_b_dir
    hand_vel = obs[:, 23:26] + np.cross(obs[:, 20:23], (HAND_OFFSET - LINK_B_COM) * link_b_dir)
    return ELBOW_OFFSET * link_a_dir, HAND_OFFSET * link_b_dir, elbow, hand, hand_vel


def scripted_actions(obs: np.ndarray, kp: float = 80.0, kd: float = 25.0,
                     lead: float = 10.0) -> np.ndarray:
    """Actions (N, 4) that pull each hand toward a point `lead` physics steps ahead of its goal."""
    upper, lower, elbow, hand, hand_vel = hand_state(obs)
    goal = obs[:, 26:29]
    step = np.radians(obs[:, 32])[:, None] * lead
    # The goal orbits the vertical axis; rotate it ahead by `lead` physics steps to cut the lag.
    c, s = np.cos(step), np.sin(step)
    ahead = np.concatenate([c * goal[:, :1] + s * goal[:, 2:], goal[:, 1:2],
                            -s * goal[:, :1] + c * goal[:, 2:]], axis=1)
    force = kp * (ahead - hand) - kd * hand_vel
    weight = GRAVITY  # each link has unit mass
    torque_b = np.cross(lower, force) - np.cross(lower * LINK_B_COM / HAND_OFFSET, weight)
    torque_a = (np.cross(upper, force) - np.cross(obs[:, 0:3] - PIVOT, weight)
                - np.cross(upper, weight))
    actions = np.stack([torque_a[:, 0], torque_a[:, 2], torque_b[:, 0], torque_b[:, 2]], axis=1)
    return np.clip(actions / TORQUE_SCALE, -1.0, 1.0)
