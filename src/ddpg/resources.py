"""What a run takes from the machine: memory, checked before anything is allocated, and torch's CPU
threads, set for the run alone."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .agent import DDPG
from .config import Config, ConfigError
from .replay import ReplayBuffer, SumTree


def available_memory() -> int | None:
    """Bytes this machine can spare now (Linux's MemAvailable); None where that is unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(key: str, what: str, needed: int) -> None:
    """ConfigError naming `key` when `needed` bytes exceed what this machine can spare."""
    available = available_memory()
    if available is not None and needed > 0.8 * available:
        gib = needed / 2**30
        size = f"{gib:,.1f}" if gib < 1e6 else f"{gib:.1e}"
        raise ConfigError(f"{key}: {what} need {size} GiB, more than this machine can spare "
                          f"({available / 2**30:.1f} GiB available)")


def memory_needed(config: Config, obs_dim: int, act_dim: int) -> tuple[int, int, int]:
    """(parameters, bytes of the networks, bytes of the replay buffer) of a run with this config."""
    with torch.device("meta"):  # sizes only: nothing is allocated
        shapes = DDPG(obs_dim, np.zeros(act_dim), np.ones(act_dim), config.agent)
    parameters = sum(p.numel() for net in (shapes.actor, shapes.critic) for p in net.parameters())
    # Local and target copies, gradients and Adam's two moments: five floats per parameter.
    networks = 5 * 4 * parameters
    # Checkpoints write the buffer without copying it, so it counts once; prioritized replay adds its tree.
    n = config.agent.buffer_size
    buffer = ReplayBuffer.bytes_needed(n, obs_dim, act_dim) + (SumTree.bytes_needed(n) if config.replay.prioritized else 0)
    return parameters, networks, buffer


def check_run_memory(config: Config, obs_dim: int, act_dim: int) -> None:
    """ConfigError naming the key when the networks, or the networks and the buffer, do not fit."""
    parameters, networks, buffer = memory_needed(config, obs_dim, act_dim)
    check_memory("agent.actor_hidden, agent.critic_hidden", f"networks of {parameters:,} parameters", networks)
    check_memory("agent.buffer_size", f"{config.agent.buffer_size:,} transitions", buffer + networks)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to `threads` (0: torch's default) for the block, then put back as they
    were: the setting is one run's, and never leaks into other code in the process (a sweep trial
    in a reused worker, a test). A count above this machine's cores is a wish made on another
    machine: it is clamped, with a note, so that a run opens anywhere."""
    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    if threads > cores:
        print(f"ddpg: note: train.threads = {threads}, more than this machine's {cores} cores; using {cores}",
              file=sys.stderr)
        threads = cores
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
