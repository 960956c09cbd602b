"""Small runs and file surgery shared by the tests of run directories."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from ddpg.checkpoint import load_checkpoint, read_rows

# A Pendulum run that takes about a second: 2 environments, 200 steps an episode.
PENDULUM = ["env.id=Pendulum-v1", "env.num_envs=2", "agent.actor_hidden=[16, 16]",
            "agent.critic_hidden=[16, 16]", "agent.batch_size=32", "agent.buffer_size=2000",
            "agent.learn_every=50", "agent.updates_per_learn=2", "train.episodes=2",
            "train.checkpoint_every=1", "train.tensorboard=false", "train.seed=5", "train.target_score=none"]


def cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ddpg.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def final_state(run_dir: Path) -> dict:
    """The newest checkpoint, with its buffer's rows (payload["buffer"]["rows"])."""
    path = sorted((run_dir / "checkpoints").glob("*.pt"))[-1]
    payload = load_checkpoint(path)
    if payload["buffer"] is not None:
        payload["buffer"]["rows"] = read_rows(path, payload["buffer"])
    return payload


def assert_same_run(a: dict, b: dict) -> None:
    """Two checkpoints hold the same networks, replay contents and score history, bit for bit."""
    assert a["episode"] == b["episode"] and a["scores"] == b["scores"]
    for part in ("actor", "critic", "actor_target", "critic_target"):
        for name, value in a["agent"][part].items():
            assert torch.equal(value, b["agent"][part][name]), f"{part}.{name}"
    np.testing.assert_array_equal(a["buffer"]["rows"], b["buffer"]["rows"])


def flip_bytes_in_largest_tensor(path: Path) -> None:
    """Overwrite 64 bytes in the middle of the largest stored tensor; the zip structure stays intact."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    middle = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


class LengthsEnv(gym.Env):
    """Episodes of 2 to 4 steps, the length fixed by the reset seed (so the envs of a vector env,
    seeded seed + i, differ); observation (t, length), reward 1 a step, then termination."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.length, self.t = 2, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.length = 2 + seed % 3
        self.t = 0
        return np.array([0, self.length], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, self.length], np.float32), 1.0, self.t >= self.length, False, {}


class EndlessEnv(LengthsEnv):
    """Never terminates: only its time limit (registered: 3 steps) cuts it."""

    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, False, truncated, info


gym.register("test/Lengths-v0", entry_point=LengthsEnv)
gym.register("test/Endless-v0", entry_point=EndlessEnv, max_episode_steps=3)


def isolated(args: list[str], home: Path, ray_tmp: Path, **popen) -> subprocess.Popen:
    """Run a command in network (loopback only), PID and mount namespaces of its own (root needed).
    Ray inside binds 127.0.0.1 and sends nothing beyond loopback; when the command ends or this
    process is killed (--kill-child), the kernel ends every process started inside. HOME (where Ray
    keeps its auth token) is `home`; Ray's logs go to `ray_tmp` (a short path: Ray's socket paths
    must stay under 108 characters)."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), RAY_TMPDIR=str(ray_tmp))
    return subprocess.Popen(["unshare", "--kill-child", "-n", "-p", "-f", "-m", "--mount-proc", "sh", "-c",
                             'ip link set lo up && exec "$@"', "sh", *args], env=env, text=True, **popen)


def namespaces_available() -> bool:
    """Whether `isolated` can run here: tried once for real (root alone is not enough in a container
    without the right to create namespaces)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "-p", "-f", "-m", "--mount-proc", "sh", "-c", "ip link set lo up"],
                           capture_output=True)
    return probe.returncode == 0


def mount_namespaces() -> bool:
    """Whether a test can mount a filesystem of its own (a small tmpfs) in a mount namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True).returncode == 0
