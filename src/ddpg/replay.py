"""Replay memory in preallocated tensors, filled by every environment, sampled uniformly.

`sample` returns, beside the transitions, the indices and importance weights of the samples, and
`update_priorities` takes new TD errors: a prioritized buffer with the same interface slots in
without touching the agent's update.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor  # 1.0 where the episode truly ended; a time-limit cut keeps bootstrapping
    weights: torch.Tensor  # importance weights (uniform: ones)
    indices: torch.Tensor


class ReplayBuffer:
    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0):
        self.capacity = capacity
        self.obs = torch.zeros((capacity, obs_dim))
        self.actions = torch.zeros((capacity, act_dim))
        self.rewards = torch.zeros(capacity)
        self.next_obs = torch.zeros((capacity, obs_dim))
        self.terminated = torch.zeros(capacity)
        self.position = 0  # where the next transition goes
        self.size = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def bytes_needed(capacity: int, obs_dim: int, act_dim: int) -> int:
        return 4 * capacity * (2 * obs_dim + act_dim + 2)

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Add a batch of transitions (one per environment), wrapping around when full."""
        values = [torch.as_tensor(v, dtype=torch.float32) for v in (obs, actions, rewards, next_obs, terminated)]
        n = len(values[0])
        index = (self.position + torch.arange(n)) % self.capacity
        for name, value in zip(self.FIELDS, values):
            getattr(self, name)[index] = value
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        index = torch.randint(self.size, (batch_size,), generator=self.generator)
        return Batch(self.obs[index], self.actions[index], self.rewards[index], self.next_obs[index],
                     self.terminated[index], torch.ones(batch_size), index)

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """Uniform sampling keeps no priorities."""

    def state_dict(self) -> dict:
        return {"position": self.position, "size": self.size, "generator": self.generator.get_state(),
                **{name: getattr(self, name)[:self.size].clone() for name in self.FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        for name in self.FIELDS:
            getattr(self, name)[:size] = state[name]
        self.position, self.size = state["position"], size
        self.generator.set_state(state["generator"])
