"""What a run takes from the machine: the device it learns on, memory (the machine's and the device's),
checked before anything is allocated, and torch's CPU threads, set for the run alone."""

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


def device(wish: str, strict: bool = True) -> torch.device:
    """The device `train.device` names: auto is CUDA where torch sees a GPU, else the CPU. A device
    asked for and absent is a ConfigError naming it; unless `strict` is off (a saved config, made on
    another machine, read here): then the CPU, with a note."""
    if wish == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen, problem = torch.device(wish), None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            problem = "torch sees no CUDA device" + (" (this torch is a CPU build)" if torch.version.cuda is None else "")
        elif (chosen.index or 0) >= torch.cuda.device_count():
            problem = f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        problem = "MPS (Apple's GPU) is not available here"
    if problem is None:
        return chosen
    if strict:
        raise ConfigError(f"train.device: {wish} asked for, but {problem}")
    print(f"ddpg: note: train.device = {wish} (as the run was made), but {problem}; using the CPU", file=sys.stderr)
    return torch.device("cpu")


def memory_needed(config: Config, obs_dim: int, act_dim: int) -> tuple[int, int, int]:
    """(parameters, bytes of the networks, bytes of the replay buffer) of a run with this config."""
    with torch.device("meta"):  # sizes only: nothing is allocated
        shapes = DDPG(obs_dim, np.zeros(act_dim), np.ones(act_dim), config.agent, device="meta")
    parameters = sum(p.numel() for net in (shapes.actor, shapes.critic) for p in net.parameters())
    # Local and target copies, gradients and Adam's two moments: five floats per parameter.
    networks = 5 * 4 * parameters
    # Checkpoints write the buffer without copying it, so it counts once; prioritized replay adds its tree.
    n = config.agent.buffer_size
    buffer = ReplayBuffer.bytes_needed(n, obs_dim, act_dim) + (SumTree.bytes_needed(n) if config.replay.prioritized else 0)
    return parameters, networks, buffer


def check_run_memory(config: Config, obs_dim: int, act_dim: int, on: torch.device = torch.device("cpu")) -> None:
    """ConfigError naming the key when the networks, or the networks and the buffer, do not fit in the
    memory of the device they go to (and a prioritized buffer's tree, which stays on the host, in the
    machine's)."""
    parameters, networks, buffer = memory_needed(config, obs_dim, act_dim)
    if on.type == "cuda":
        free = torch.cuda.mem_get_info(on)[0]
        for key, what, needed in (("agent.actor_hidden, agent.critic_hidden", f"networks of {parameters:,} parameters",
                                   networks),
                                  ("agent.buffer_size", f"{config.agent.buffer_size:,} transitions",
                                   ReplayBuffer.bytes_needed(config.agent.buffer_size, obs_dim, act_dim) + networks)):
            if needed > 0.9 * free:
                raise ConfigError(f"{key}: {what} need {needed / 2**30:,.1f} GiB on {on}, more than it has free "
                                  f"({free / 2**30:.1f} GiB)")
        if config.replay.prioritized:
            check_memory("agent.buffer_size", "the priorities of the replay buffer", SumTree.bytes_needed(config.agent.buffer_size))
        return
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
