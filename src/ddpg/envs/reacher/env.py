"""The Reacher's Gymnasium classes: N arms as one vector env stepped by one call (what training
uses), and one arm as an Env (for the wider ecosystem), both with offscreen rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .model import ACT_SIZE, EPISODE_DECISIONS, OBS_SIZE, PHYSICS_DT, PHYSICS_STEPS_PER_DECISION, REWARD_RANGE
from .sim import ReacherSim, check_actions


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


