"""The Reacher's figures and its MuJoCo model: N independent arms in one model, and the sensors
its observation is gathered from.

Observations and actions are in Unity's left-handed, y-up frame so they match the original one to
one; the MuJoCo model is right-handed and z-up. Unity (x, y, z) is MuJoCo (x, z, y): a mirror, so
every axial quantity (torque, angular velocity, quaternion vector part) changes sign on the way.
See docs/reacher.md for the figures and for where this departs from the PhysX original.
"""

from __future__ import annotations

import math

import numpy as np

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
SCENE_XML = f"""
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

# Each arm's raw row, built by the physics step: its 29 sensor values (see build_model_xml; the
# first three sensors are positions, taken relative to the arm's base), the goal (3), its speed (1)
# and the original's constant hand entry, (0, 0, 1) in MuJoCo's frame. Unity's observation takes,
# in its order, these entries with these signs: positions swap y and z; axial vectors (angular
# velocity, quaternion vector part) also change sign, the frames being mirrors.
OBS_FROM = [0, 2, 1, 10, 12, 11, 9, 17, 19, 18, 23, 25, 24,  # link A
             3, 5, 4, 14, 16, 15, 13, 20, 22, 21, 26, 28, 27,  # link B
             29, 31, 30]  # goal; then the hand entry (3) and the goal speed (1)
HAND_TRUE, HAND_CONSTANT = [6, 8, 7], [33, 35, 34]
OBS_SIGN = np.array([1, 1, 1, -1, -1, -1, 1, -1, -1, -1, 1, 1, 1] * 2 + [1] * 7, np.float64)


def arm_bases(num_arms: int) -> np.ndarray:
    """Base positions (MuJoCo frame) of `num_arms` arms on a near-square grid, ARM_SPACING apart."""
    cols = math.ceil(math.sqrt(num_arms))
    idx = np.arange(num_arms)
    bases = np.zeros((num_arms, 3))
    bases[:, 0] = (idx % cols - (cols - 1) / 2) * ARM_SPACING
    bases[:, 1] = (idx // cols - (math.ceil(num_arms / cols) - 1) / 2) * ARM_SPACING
    return bases


def goal_positions(angle: np.ndarray, radius: float = GOAL_ORBIT_RADIUS, height: float = GOAL_HEIGHT) -> np.ndarray:
    """Goal centres relative to the bases, MuJoCo frame, for goal angles in degrees (any shape)."""
    rad = np.radians(angle)
    return np.stack([radius * np.sin(rad), radius * np.cos(rad), np.full_like(rad, height)], axis=-1)


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
  <default><geom contype="0" conaffinity="0"/></default>{SCENE_XML}
  <worldbody>{arms}{goals}
  </worldbody>
  <sensor>{"".join(sensors.format(i=i) for i in range(num_arms))}
  </sensor>
</mujoco>"""

