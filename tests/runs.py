"""Small runs and file surgery shared by the tests of run directories."""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from ddpg.checkpoint import load_checkpoint

# A Pendulum run that takes about a second: 2 environments, 200 steps an episode.
PENDULUM = ["env.id=Pendulum-v1", "env.num_envs=2", "agent.actor_hidden=[16, 16]",
            "agent.critic_hidden=[16, 16]", "agent.batch_size=32", "agent.buffer_size=2000",
            "agent.learn_every=50", "agent.updates_per_learn=2", "train.episodes=2",
            "train.checkpoint_every=1", "train.tensorboard=false", "train.seed=5", "train.target_score=none"]


def cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ddpg.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def final_state(run_dir: Path) -> dict:
    return load_checkpoint(sorted((run_dir / "checkpoints").glob("*.pt"))[-1])


def assert_same_run(a: dict, b: dict) -> None:
    """Two checkpoints hold the same networks, replay contents and score history, bit for bit."""
    assert a["episode"] == b["episode"] and a["scores"] == b["scores"]
    for part in ("actor", "critic", "actor_target", "critic_target"):
        for name, value in a["agent"][part].items():
            assert torch.equal(value, b["agent"][part][name]), f"{part}.{name}"
    assert torch.equal(a["buffer"]["obs"], b["buffer"]["obs"])


def flip_bytes_in_largest_tensor(path: Path) -> None:
    """Overwrite 64 bytes in the middle of the largest stored tensor; the zip structure stays intact."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    middle = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
