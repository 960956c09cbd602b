"""The learner's speed against an earlier commit's (--before, default 21fdebd) and against a plain
eager PyTorch recipe.

Each contestant runs in its own worker process with one torch thread; the workers take turns, so
the contestants are measured interleaved in one run under the same load, and each figure is the
median of several rounds (ratios: the median of the per-round ratios).

- "before": the code of the commit given by --before, unpacked from git (`git archive`) into a
  temporary folder, its C extension built there, and imported from there, with agent.compile off
  where that commit has the option; "before compiled": the same with agent.compile=true (only
  where the commit has it).
- "new": this checkout's code with agent.compile=false.
- "compiled": this checkout's code with agent.compile=true; its first updates wait for the compiler.
- "eager": the plain recipe written out below: nn.Sequential networks, torch.optim.Adam as
  constructed by default, clip_grad_norm_, a soft update looping over the parameters, sampling by
  indexing five tensors.

Part 1, updates/s (one update: sample a batch of 256, learn from it), at the default shapes (128-128,
layer norm, obs 33, act 4) and at 400-300 without normalization. Part 2, seconds per episode of
the 20-arm Reacher: the real Trainer (configs/reacher.toml: 1000 steps, 1000 updates) of the commit before
and of this checkout, against the eager recipe with the same 1000 environment steps (acting with
its actor plus Gaussian noise) and the same 1000 updates.

Run: python benchmarks/learner_speed.py [--rounds 7] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "21fdebd"
OBS, ACT, BATCH = 33, 4, 256
SHAPES = {"128-128 layer norm": ["agent.actor_hidden=[128, 128]", "agent.critic_hidden=[128, 128]",
                                 "agent.layer_norm=true"],
          "400-300 no norm": ["agent.actor_hidden=[400, 300]", "agent.critic_hidden=[400, 300]",
                              "agent.layer_norm=false", "agent.batch_norm=false"]}
# Each contestant: (the code: "before" or "new", the worker kind, its overrides).
CONTESTANTS = {"before": ("before", "ddpg", ["agent.compile=false"]),
               "before compiled": ("before", "ddpg", ["agent.compile=true"]),
               "new": ("new", "ddpg", ["agent.compile=false"]),
               "compiled": ("new", "ddpg", ["agent.compile=true"]),
               "eager": ("new", "eager", [])}


# -- the plain eager recipe ---------------------------------------------------------------------
class EagerRecipe:
    """DDPG as one would write it in plain PyTorch, with the shipped config's shapes and settings."""

    def __init__(self, config, obs_dim: int, act_dim: int, capacity: int):
        import copy

        import torch
        from torch import nn

        a = config.agent
        act = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}[a.activation]

        def mlp(sizes):
            layers = []
            for i, o in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(i, o), *([nn.LayerNorm(o)] if a.layer_norm else []), act()]
            return layers

        k = a.critic_action_layer
        self.actor = nn.Sequential(*mlp([obs_dim, *a.actor_hidden]), nn.Linear(a.actor_hidden[-1], act_dim), nn.Tanh())
        self.state = nn.Sequential(*mlp([obs_dim, *a.critic_hidden[:k]]))
        head = [a.critic_hidden[k - 1] if k else obs_dim, *a.critic_hidden[k:]]
        head[0] += act_dim
        self.head = nn.Sequential(*mlp(head), nn.Linear(a.critic_hidden[-1], 1))
        self.critic = nn.ModuleList([self.state, self.head])
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=a.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=a.critic_lr)
        self.config, self.torch, self.nn = a, torch, nn
        self.obs, self.actions = torch.zeros(capacity, obs_dim), torch.zeros(capacity, act_dim)
        self.rewards, self.next_obs, self.dones = torch.zeros(capacity), torch.zeros(capacity, obs_dim), torch.zeros(capacity)
        self.size, self.capacity = 0, capacity

    def q(self, critic, s, a):
        return critic[1](self.torch.cat([critic[0](s), a], -1)).squeeze(-1)

    def store(self, s, a, r, s2, d):
        torch = self.torch
        i = (self.size + torch.arange(len(s))) % self.capacity
        self.obs[i], self.actions[i], self.rewards[i] = torch.as_tensor(s), torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(r, dtype=torch.float32)
        self.next_obs[i], self.dones[i] = torch.as_tensor(s2), torch.as_tensor(d, dtype=torch.float32)
        self.size = min(self.size + len(s), self.capacity)

    def update(self):
        torch, c = self.torch, self.config
        i = torch.randint(self.size, (c.batch_size,))
        s, a, r, s2, d = self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.dones[i]
        with torch.no_grad():
            y = r + c.gamma * (1 - d) * self.q(self.critic_target, s2, self.actor_target(s2))
        critic_loss = (y - self.q(self.critic, s, a)).pow(2).mean()
        self.critic_opt.zero_grad()
        critic_loss.backward()
        if c.critic_grad_clip > 0:
            self.nn.utils.clip_grad_norm_(self.critic.parameters(), c.critic_grad_clip)
        self.critic_opt.step()
        actor_loss = -self.q(self.critic, s, self.actor(s)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for target, local in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                for t, p in zip(target.parameters(), local.parameters()):
                    t.lerp_(p, c.tau)

    def episode(self, env, rng, seed: int) -> None:
        torch, c = self.torch, self.config
        obs, _ = env.reset(seed=seed)
        for step in range(1, 1001):
            with torch.no_grad():
                action = self.actor(torch.as_tensor(obs)).numpy()
            action = np.clip(action + 0.2 * rng.standard_normal(action.shape), -1, 1)
            next_obs, reward, terminated, _, _ = env.step(action.astype(np.float32))
            self.store(obs, action, reward, next_obs, terminated)
            if step % c.learn_every == 0 and self.size >= c.batch_size:
                for _ in range(c.updates_per_learn):
                    self.update()
            obs = next_obs


# -- workers ------------------------------------------------------------------------------------
def fill(store, n: int, obs_dim: int, act_dim: int) -> None:
    rng = np.random.default_rng(0)
    store(rng.standard_normal((n, obs_dim)).astype(np.float32), rng.uniform(-1, 1, (n, act_dim)),
          rng.standard_normal(n), rng.standard_normal((n, obs_dim)).astype(np.float32), np.zeros(n))


def worker(kind: str, config_file: str, overrides: list[str]) -> None:
    """Serve timing requests on stdin ("updates N" or "episode"), one JSON figure per line."""
    import torch

    torch.set_num_threads(1)
    from ddpg.config import load_config

    config = load_config(config_file, [*overrides, "train.tensorboard=false", "train.save_buffer=false"])
    episode = 0
    if kind == "eager":
        recipe = EagerRecipe(config, OBS, ACT, config.agent.buffer_size)
        env = rng = None
        step = recipe.update

        def run_episode():
            nonlocal env, rng
            if env is None:
                from ddpg.envs.factory import make_env
                env, rng = make_env(config.env), np.random.default_rng(0)
                recipe.size = 0
            recipe.episode(env, rng, episode)
        fill(recipe.store, 100_000, OBS, ACT)
    else:
        from ddpg.agent import DDPG
        from ddpg.replay import ReplayBuffer
        from ddpg.trainer import Trainer

        agent = DDPG(OBS, -np.ones(ACT), np.ones(ACT), config.agent)
        buffer = ReplayBuffer(100_000, OBS, ACT)
        fill(buffer.add, 100_000, OBS, ACT)

        def step():
            agent.learn(buffer.sample(config.agent.batch_size))
        trainer = None

        def run_episode():
            nonlocal trainer
            if trainer is None:
                trainer = Trainer(config, Path(tempfile.mkdtemp()))
            trainer.run_episode()
            trainer.episode += 1
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.split()
        start = time.perf_counter()
        if command[0] == "updates":
            for _ in range(int(command[1])):
                step()
        else:
            run_episode()
            episode += 1
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


class Worker:
    def __init__(self, kind: str, overrides: list[str], root: Path):
        env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_NUM_THREADS="1")
        config = root / "configs" / "reacher.toml"
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", kind, str(config), *overrides], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def time(self, command: str) -> float:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def unpack(rev: str, folder: Path) -> Path:
    """The package and configs of commit `rev`, unpacked into `folder`, its C extensions built in place."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/ddpg", "configs"], check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"cannot unpack commit {rev} with git: {err}") from None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    sources = sorted((folder / "src").rglob("*.c"))
    if sources:
        modules = [".".join(c.relative_to(folder / "src").with_suffix("").parts) for c in sources]
        setup = ("from setuptools import Extension, setup; setup(script_args=['build_ext', '--inplace', '-q'], "
                 f"package_dir={{'': 'src'}}, ext_modules=[Extension(m, [c], extra_compile_args=['-O3']) "
                 f"for m, c in {list(zip(modules, map(str, sources)))!r}])")
        subprocess.run([sys.executable, "-c", setup], cwd=folder, check=True, capture_output=True)
    return folder


def knows_compile(folder: Path) -> bool:
    return "compile" in (folder / "src" / "ddpg" / "config.py").read_text()


def contest(workers: dict[str, Worker], command: str, rounds: int) -> dict[str, np.ndarray]:
    times = {name: [] for name in workers}
    for _ in range(rounds):
        for name, w in workers.items():
            times[name].append(w.time(command))
    return {name: np.array(t) for name, t in times.items()}


# The ratios printed: how many times faster the first is than the second.
RATIOS = (("new", "before"), ("compiled", "before compiled"), ("compiled", "before"), ("new", "eager"),
          ("compiled", "eager"), ("eager", "before"))


def ratio(a: np.ndarray, b: np.ndarray) -> str:
    """How many times faster a is than b: the median of per-round ratios, with their range."""
    r = b / a
    return f"{np.median(r):.2f}x (rounds {r.min():.2f} to {r.max():.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per contestant")
    parser.add_argument("--episodes", type=int, default=5, help="timed episodes per contestant")
    parser.add_argument("--before", default=BEFORE, metavar="REV", help=f"the commit to compare with (default {BEFORE})")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.worker[2:])

    with tempfile.TemporaryDirectory() as tmp:
        roots = {"before": unpack(args.before, Path(tmp)), "new": ROOT}
        contestants = {name: (roots[code], kind, overrides) for name, (code, kind, overrides) in CONTESTANTS.items()}
        if not knows_compile(roots["before"]):  # before agent.compile existed: the update as it was
            contestants["before"] = (roots["before"], "ddpg", [])
            del contestants["before compiled"]
        print(f"one torch thread per worker; {args.rounds} rounds; before = commit {args.before}", flush=True)
        for shape, overrides in SHAPES.items():
            start = time.perf_counter()
            workers = {name: Worker(kind, overrides + extra, root) for name, (root, kind, extra) in contestants.items()}
            n = 300 if "128" in shape else 100
            warmup = {name: w.time("updates 50") for name, w in workers.items()}  # includes any compilation
            t = contest(workers, f"updates {n}", args.rounds)
            for w in workers.values():
                w.close()
            rate = ", ".join(f"{name} {n / np.median(v):.0f}" for name, v in t.items())
            ratios = ", ".join(f"{name}/{base} {ratio(t[name], t[base])}" for name, base in RATIOS if name in t and base in t)
            print(f"{shape}, batch {BATCH}, obs {OBS}, act {ACT}: updates/s {rate}; {ratios}; first 50 updates (s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in warmup.items())
                  + f"; {time.perf_counter() - start:.0f} s", flush=True)

        workers = {name: Worker(kind, extra, root) for name, (root, kind, extra) in contestants.items()}
        first = {name: w.time("episode") for name, w in workers.items()}  # fills the buffer, compiles
        t = contest(workers, "episode", args.episodes)
        for w in workers.values():
            w.close()
        seconds = ", ".join(f"{name} {np.median(v):.2f}" for name, v in t.items())
        ratios = ", ".join(f"{name}/{base} {ratio(t[name], t[base])}" for name, base in RATIOS if name in t and base in t)
        print(f"one 20-arm Reacher episode (1000 steps, 1000 updates; the eager recipe with its own loop), s: "
              f"{seconds}; {ratios}; first episode (s): " + ", ".join(f"{k} {v:.1f}" for k, v in first.items()),
              flush=True)


if __name__ == "__main__":
    main()
