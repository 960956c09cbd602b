"""Replay memory in preallocated tensors on the learner's device, filled by every environment, sampled
uniformly or by priority.

`sample` returns, beside the transitions, the indices and importance weights of the samples, and
`update_priorities` takes new TD errors: a prioritized buffer with the same interface slots in
without touching the agent's update.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor  # 1.0 where the episode truly ended; a time-limit cut keeps bootstrapping
    horizon: torch.Tensor  # rewards summed in `rewards` (n-step returns; 1: a one-step transition)
    weights: torch.Tensor  # importance weights (uniform: ones)
    indices: torch.Tensor


class ReplayBuffer:
    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "horizon")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0, device: str | torch.device = "cpu"):
        self.capacity = capacity
        self.device = torch.device(device)
        # One row per transition, the fields side by side, so that a batch is one gather of whole
        # rows (five gathers from five tensors cost more); each field is a view into it.
        self.storage = torch.zeros((capacity, 2 * obs_dim + act_dim + 3), device=self.device)
        o, a = obs_dim, act_dim
        self._columns = [slice(0, o), slice(o, o + a), o + a, slice(o + a + 1, 2 * o + a + 1), 2 * o + a + 1,
                         2 * o + a + 2]
        for name, columns in zip(self.FIELDS, self._fields(self.storage)):
            setattr(self, name, columns)
        self.position = 0  # where the next transition goes
        self.size = 0
        self.added = 0  # transitions added over the buffer's life: transition t sits in row t % capacity
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def bytes_needed(capacity: int, obs_dim: int, act_dim: int) -> int:
        return 4 * capacity * (2 * obs_dim + act_dim + 3)

    def _fields(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """obs, actions, rewards, next_obs, terminated, horizon: views into rows of the packed storage."""
        return [rows[:, columns] for columns in self._columns]

    def _batch(self, index: torch.Tensor, weights: torch.Tensor) -> Batch:
        return Batch(*self._fields(self.storage[index]), weights, index)

    def add(self, obs, actions, rewards, next_obs, terminated, horizon=1.0) -> None:
        """Add a batch of transitions (one per environment, or n-step ones with their horizons) at
        `position`, wrapping around when full. The fields are packed into rows in NumPy (a step's six
        small conversions cost a tenth of what torch's do): on the CPU, short of the wrap, straight
        into the storage's own rows (no index made: 10 us a step); otherwise into new rows copied to
        the buffer's device at once."""
        n = len(obs)
        in_place = self.device.type == "cpu" and self.position + n <= self.capacity
        rows = self.storage.numpy()[self.position:self.position + n] if in_place else \
            np.empty((n, self.storage.shape[1]), np.float32)
        for field, value in zip(self._fields(rows), (obs, actions, rewards, next_obs, terminated, horizon)):
            field[...] = value
        if not in_place:
            index = (self.position + torch.arange(n)) % self.capacity
            self.storage[index.to(self.device)] = torch.from_numpy(rows).to(self.device)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def rows(self, first: int, last: int) -> list[np.ndarray]:
        """The packed rows of transitions first to last - 1 (counted as `added` counts them, all still
        held), in that order, as the stretches of storage that hold them (two where the ring wraps):
        views on the CPU, so that a checkpoint copies nothing; copies on another device."""
        stretches = []
        while first < last:
            start = first % self.capacity
            stop = start + min(last - first, self.capacity - start)
            stretches.append(self.storage[start:stop].cpu().numpy())
            first += stop - start
        return stretches

    def sample(self, batch_size: int) -> Batch:
        index = torch.randint(self.size, (batch_size,), generator=self.generator, device=self.device)
        return self._batch(index, torch.ones(batch_size, device=self.device))

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """Uniform sampling keeps no priorities."""

    def state_dict(self) -> dict:
        """Where the buffer stands, without its rows: checkpoints write those apart (`rows`), each
        row once."""
        return {"position": self.position, "size": self.size, "added": self.added,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """The saved position and sampler, and the rows: `rows` (the held transitions, oldest first, as
        `rows` gives them) or, from a format-2 checkpoint, each field's rows in storage order. A
        sampler's state saved by another kind of device (CPU and CUDA generators are different
        algorithms) cannot continue here: sampling then goes on from a new stream, seeded from the
        saved state, the same each time the checkpoint is loaded."""
        size = state["size"]
        # Format 2 kept no count: any with the same row for the next transition and at least `size` will do.
        added = state.get("added", state["position"] + (self.capacity if size == self.capacity else 0))
        if "rows" in state:
            rows = torch.from_numpy(state["rows"]).reshape(size, self.storage.shape[1]).to(self.device)
            self.storage[(torch.arange(added - size, added) % self.capacity).to(self.device)] = rows
        else:
            for name in self.FIELDS:
                # A buffer saved before n-step returns holds one-step transitions: a horizon of 1.
                getattr(self, name)[:size] = state[name] if name in state or name != "horizon" else 1.0
        self.position, self.size, self.added = state["position"], size, added
        try:
            self.generator.set_state(state["generator"])
        except RuntimeError:
            digest = hashlib.sha256(state["generator"].numpy().tobytes()).digest()
            self.generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class SumTree:
    """Sums (and maxima) of priorities in a tree with 32 children per node: 4 levels cover a million
    leaves, so a whole batch is sampled or updated with a few array operations per level and no
    Python loop per element."""

    BRANCHING = 32

    def __init__(self, capacity: int):
        self.levels = [np.zeros(n) for n in self.level_sizes(capacity)]  # the last holds the leaves
        self.maxima = [np.zeros(len(level)) for level in self.levels[:-1]] + [self.levels[-1]]
        self._running_sum = np.triu(np.ones((self.BRANCHING, self.BRANCHING)))

    @classmethod
    def level_sizes(cls, capacity: int) -> list[int]:
        """Each level as long as the capacity needs, rounded up to whole nodes of 32 (a full power of
        32 would give a 2-million buffer 33.5 million leaves); the root level holds 32."""
        k = cls.BRANCHING
        sizes = [-(-max(capacity, 1) // k) * k]
        while sizes[0] > k:
            sizes.insert(0, -(-sizes[0] // k ** 2) * k)
        return sizes

    @classmethod
    def bytes_needed(cls, capacity: int) -> int:
        sizes = cls.level_sizes(capacity)
        return 8 * (2 * sum(sizes) - sizes[-1])  # sums and maxima share the leaves

    @property
    def total(self) -> float:
        return float(self.levels[0].sum())

    @property
    def max(self) -> float:
        return float(self.maxima[0].max())

    @property
    def leaves(self) -> np.ndarray:
        return self.levels[-1]

    def set(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set leaves (a repeated index keeps its last value) and recompute the sums above them."""
        self.levels[-1][index] = priority
        for d in range(len(self.levels) - 1, 0, -1):
            index = index // self.BRANCHING  # repeats just write the same sum twice: cheaper than unique
            self.levels[d - 1][index] = self.levels[d].reshape(-1, self.BRANCHING)[index].sum(axis=1)
            self.maxima[d - 1][index] = self.maxima[d].reshape(-1, self.BRANCHING)[index].max(axis=1)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each value in [0, total), the leaf where the running sum of priorities passes it."""
        index = np.zeros(len(mass), dtype=np.int64)
        rows = np.arange(len(mass))
        for level in self.levels:
            # Running sums of each node's children as one small matrix product (np.cumsum along
            # rows is several times slower).
            cumulative = level.reshape(-1, self.BRANCHING)[index] @ self._running_sum
            # Stay inside this node's mass (rounding), so a child with no mass is never chosen.
            mass = np.minimum(mass, cumulative[:, -1] * (1 - 1e-12))
            child = (cumulative <= mass[:, None]).sum(axis=1)
            mass = mass - np.where(child > 0, cumulative[rows, np.maximum(child - 1, 0)], 0.0)
            index = index * self.BRANCHING + child
        return index


def importance_weights(probabilities: np.ndarray, size: int, beta: float) -> np.ndarray:
    """(N * P)^-beta, divided by the batch's largest so that weights only ever scale updates down."""
    weights = (size * probabilities) ** -beta
    return weights / weights.max()


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritization (Schaul et al., 2016): P(i) ~ (|TD error| + epsilon)^alpha.

    New transitions enter with the largest priority the buffer holds (1 while it holds none): a
    maximum that never came down would, with Reacher's TD errors far below 1, sample every new
    transition many times more often than anything learned from. Beta anneals linearly from its
    start to 1 over `beta_steps` sampled batches.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0, alpha: float = 0.6,
                 beta: float = 0.4, beta_steps: int = 100_000, epsilon: float = 1e-6,
                 device: str | torch.device = "cpu"):
        super().__init__(capacity, obs_dim, act_dim, seed, device)
        self.alpha, self.beta_start, self.beta_steps, self.epsilon = alpha, beta, beta_steps, epsilon
        self.tree = SumTree(capacity)
        self.batches = 0
        self.rng = np.random.default_rng(seed)

    @property
    def beta(self) -> float:
        return self.beta_start + (1.0 - self.beta_start) * min(1.0, self.batches / self.beta_steps)

    @property
    def max_priority(self) -> float:
        """The largest priority held (already raised to alpha)."""
        return self.tree.max or 1.0

    def add(self, obs, actions, rewards, next_obs, terminated, horizon=1.0) -> None:
        index = (self.position + np.arange(len(obs))) % self.capacity
        super().add(obs, actions, rewards, next_obs, terminated, horizon)
        self.tree.set(index, np.zeros(len(index)))  # the overwritten transitions' priorities leave
        self.tree.set(index, np.full(len(index), self.max_priority))

    def sample(self, batch_size: int) -> Batch:
        """Drawn on the host, where the tree is (its walk is a few NumPy operations per level); the
        batch itself is gathered on the buffer's device."""
        total = self.tree.total
        # One draw in each of batch_size equal slices of the total: stratified, as in the paper.
        mass = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        index = self.tree.find(mass)
        weights = importance_weights(self.tree.leaves[index] / total, self.size, self.beta)
        self.batches += 1
        return self._batch(torch.from_numpy(index).to(self.device), torch.from_numpy(weights).float().to(self.device))

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """New priorities on the host's tree: on a GPU, each update's TD errors come back to the host."""
        priority = (td_errors.detach().abs().double().cpu().numpy() + self.epsilon) ** self.alpha
        self.tree.set(indices.cpu().numpy(), priority)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "priorities": torch.from_numpy(self.tree.leaves[:self.size]),
                "batches": self.batches, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree.set(np.arange(self.size), state["priorities"].numpy())
        self.batches = state["batches"]
        self.rng.bit_generator.state = state["rng"]


class NStepReturns:
    """n-step transitions made from one-step ones, each environment's window its own: (s_t, a_t,
    R = r_t + gamma r_t+1 + ... + gamma^(k-1) r_t+k-1, s_t+k, terminated, k), with k = n, or fewer
    where the episode ended inside the window. A termination ends the sum and masks the bootstrap; a
    time-limit cut ends the sum and keeps it, from the true last observation. A window empties when
    its episode ends, and the trainer checkpoints only between episodes: no window is ever pending in
    a checkpoint, so windows need no saving for an exact resume."""

    def __init__(self, n: int, gamma: float, num_envs: int):
        self.n, self.gamma = n, gamma
        self.windows: list[list[tuple]] = [[] for _ in range(num_envs)]  # per env: (obs, action, reward)

    def push(self, envs: np.ndarray, obs, actions, rewards, next_obs, terminated, truncated) -> list[tuple]:
        """One step of the environments `envs` (their indices, in order): the n-step transitions that
        it completes, as (obs, action, return, next_obs, terminated, k)."""
        ready = []
        for i, e in enumerate(envs):
            window = self.windows[e]
            window.append((obs[i], actions[i], float(rewards[i])))
            ended = bool(terminated[i] or truncated[i])
            while len(window) == self.n or (window and ended):
                value = sum(self.gamma ** j * reward for j, (_, _, reward) in enumerate(window))
                first_obs, first_action, _ = window[0]
                ready.append((first_obs, first_action, value, next_obs[i], float(terminated[i]), len(window)))
                del window[0]
        return ready
