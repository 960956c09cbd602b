"""Offscreen pictures of the Reacher: a camera that frames every arm, goals that light up while
they score, and an optional line of text.

The simulation is only read: frames are drawn from the renderer's own copy of the model and data,
so rendering cannot alter a rollout.
"""

from __future__ import annotations

import copy
import functools
import math

import mujoco
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .model import ARM_REACH, GOAL_HEIGHT, GOAL_ORBIT_RADIUS, GOAL_RADIUS_PER_SIZE, PIVOT_HEIGHT, goal_positions
from .offscreen import Offscreen
from .sim import ReacherSim

# Kept clear of arms and goals on every side, as a fraction of the frame's shorter side.
MARGIN = 0.05
# Looking along +y (the goals' zero angle points away from the camera), from above.
AZIMUTH = 90.0
ELEVATION = -30.0
# Fog from FOG_START to FOG_END times the distance of the farthest arm envelope.
FOG_START, FOG_END = 1.0, 3.0
GOAL_LIT = (0.25, 1.0, 0.35, 0.6)


def envelope_radius(goal_radius: float) -> float:
    """Radius about an arm's pivot of the smallest sphere that holds the arm in any pose and its
    goal anywhere on its orbit."""
    goal_far = math.hypot(GOAL_ORBIT_RADIUS, PIVOT_HEIGHT - GOAL_HEIGHT) + goal_radius
    return max(ARM_REACH, goal_far)


def fit_camera(centres: np.ndarray, radius: float, fovy: float, width: int, height: int,
               azimuth: float = AZIMUTH, elevation: float = ELEVATION,
               margin: float = MARGIN) -> mujoco.MjvCamera:
    """The nearest free camera, looking from `azimuth`/`elevation` (degrees), whose picture holds
    every sphere (`centres`, `radius`) inside a border of `margin` times the frame's shorter side.

    A sphere is inside the picture when it lies on the inner side of each of the frustum's four side
    planes by at least its radius; the planes pass through the camera, so each condition is linear in
    the camera position. Per axis the two conditions bound the camera's depth; the deepest camera
    satisfying both sits midway between them sideways.
    """
    forward = _forward_of(azimuth, elevation)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    border = margin * min(width, height)
    tan_v = math.tan(math.radians(fovy) / 2)
    camera_at = np.zeros(3)  # in (right, up, forward) coordinates
    depth_limits = []
    for axis, (direction, tan_half) in enumerate(
            ((right, tan_v * width / height * (1 - 2 * border / width)),
             (up, tan_v * (1 - 2 * border / height)))):
        half = math.atan(tan_half)
        side, depth = centres @ direction, centres @ forward
        # Inner side of the two planes: depth * sin(half) -+ side * cos(half) >= radius.
        low = np.min(depth * math.sin(half) - side * math.cos(half)) - radius
        high = np.min(depth * math.sin(half) + side * math.cos(half)) - radius
        depth_limits.append((low + high) / (2 * math.sin(half)))
        camera_at[axis] = (high - low) / (2 * math.cos(half))
    camera_at[2] = min(depth_limits)
    position = camera_at[0] * right + camera_at[1] * up + camera_at[2] * forward
    camera = mujoco.MjvCamera()
    camera.distance = float(np.mean(centres @ forward) - camera_at[2])
    camera.lookat[:] = position + camera.distance * forward
    camera.azimuth, camera.elevation = azimuth, elevation
    return camera


def _forward_of(azimuth: float, elevation: float) -> np.ndarray:
    """Unit view direction of a free camera; MuJoCo's convention, angles in degrees."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


class Renderer:
    """RGB frames of all arms and their goals; a goal is lit while its hand is inside it.

    It draws from its own copy of the model and data, into which it copies the arms' joint
    positions: rendering reads the simulation and never writes to it.
    """

    def __init__(self, sim: ReacherSim, width: int = 640, height: int = 480):
        self.sim = sim
        self.width, self.height = int(width), int(height)
        self._model = copy.deepcopy(sim.model)
        self._data = mujoco.MjData(self._model)
        # The offscreen buffer is the frame: any size works and nothing larger is cleared.
        self._model.vis.global_.offwidth, self._model.vis.global_.offheight = self.width, self.height
        self._goals = slice(self._model.ngeom - sim.num_arms, None)  # the model's last geoms
        self._goal_idle = self._model.geom_rgba[self._goals].copy()
        self._offscreen: Offscreen | None = None
        self._framed_goal_size: float | None = None
        self.camera = mujoco.MjvCamera()

    def _frame(self) -> None:
        """Fit the camera to the arms' envelopes, which grow with the goal size. The fog starts
        behind the farthest envelope, so it fades only the floor toward the horizon; MuJoCo reads
        it when the GL context is made, hence a new renderer (goal sizes change rarely)."""
        sim, model = self.sim, self._model
        pivots = sim.bases + [0.0, 0.0, PIVOT_HEIGHT]
        radius = envelope_radius(sim.goal_size * GOAL_RADIUS_PER_SIZE)
        camera = fit_camera(pivots, radius, model.vis.global_.fovy, self.width, self.height)
        position = camera.lookat - camera.distance * _forward_of(camera.azimuth, camera.elevation)
        farthest = np.max(np.linalg.norm(pivots - position, axis=1)) + radius
        model.vis.map.fogstart = FOG_START * farthest / model.stat.extent
        model.vis.map.fogend = FOG_END * farthest / model.stat.extent
        self.close()
        self._offscreen = Offscreen(model, self.width, self.height, max_geom=max(10_000, 2 * model.ngeom))
        self._offscreen.scene.flags[mujoco.mjtRndFlag.mjRND_FOG] = True
        self.camera = camera
        self._framed_goal_size = sim.goal_size

    def render(self, text: str | None = None) -> np.ndarray:
        sim, model, data = self.sim, self._model, self._data
        if self._framed_goal_size != sim.goal_size:
            self._frame()
        model.geom_size[self._goals] = sim.model.geom_size[self._goals]
        goals = goal_positions(sim.goal_angle)
        inside = np.linalg.norm(sim.hand_positions() - goals, axis=1) < sim.reward_distance
        model.geom_rgba[self._goals] = np.where(inside[:, None], GOAL_LIT, self._goal_idle)
        data.qpos[:] = sim.data.qpos
        data.mocap_pos[:] = sim.bases + goals
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)
        frame = self._offscreen.render(model, data, self.camera)
        if text:
            draw_text(frame, text)
        return frame

    def close(self) -> None:
        if self._offscreen is not None:
            self._offscreen.close()
            self._offscreen = None
            self._framed_goal_size = None  # a later render makes a new renderer and frames it again


def draw_text(frame: np.ndarray, text: str) -> None:
    """Write `text` in the frame's top-left corner, white on a dark band, in place."""
    size = max(10, frame.shape[0] // 30)
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    pad = size // 3
    band = frame[:bottom + 2 * pad, :min(frame.shape[1], right + 2 * pad)]
    image = Image.fromarray(band // 3)
    ImageDraw.Draw(image).text((pad, pad), text, fill=(255, 255, 255), font=font)
    band[:] = np.asarray(image)


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
