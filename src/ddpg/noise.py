"""Exploration noise, one independent process per environment, and schedules for its scale."""

from __future__ import annotations

import numpy as np
import torch

from .config import NoiseConfig


def ou_step(x: np.ndarray, theta: float, sigma: float, normal: np.ndarray) -> np.ndarray:
    """One Ornstein-Uhlenbeck step toward zero: x + theta * (0 - x) + sigma * N(0, 1)."""
    return x - theta * x + sigma * normal


class Noise:
    """Noise of shape (num_envs, act_dim): every environment draws its own, never a shared one."""

    def __init__(self, config: NoiseConfig, num_envs: int, act_dim: int, seed: int):
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((num_envs, act_dim))

    def reset(self) -> None:
        self.state[:] = 0.0

    def sample(self) -> np.ndarray:
        normal = self.rng.standard_normal(self.state.shape)
        if self.config.kind == "gaussian":
            return self.config.sigma * normal
        self.state = ou_step(self.state, self.config.theta, self.config.sigma, normal)
        return self.state.copy()

    def state_dict(self) -> dict:
        return {"state": torch.from_numpy(self.state.copy()), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.state = np.asarray(state["state"], dtype=np.float64).copy()
        self.rng.bit_generator.state = state["rng"]


def noise_scale(config: NoiseConfig, episode: int, trailing_score: float | None,
                target_score: float | None) -> float:
    """Multiplier of the noise for an episode (0-based), per the configured schedule."""
    if config.schedule == "exponential":
        return max(config.floor, config.decay ** episode)
    if config.schedule == "score" and trailing_score is not None and target_score:
        return float(np.clip(1.0 - trailing_score / target_score, config.floor, 1.0))
    return 1.0
