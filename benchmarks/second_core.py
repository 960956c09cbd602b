"""What this machine's second core could buy the 20-arm Reacher's run (configs/reacher.toml), and what
smaller networks would: the figures behind docs/benchmarks.md's "What is left of the minute".

Part 1, the full-effort episodes (1000 compiled updates each): ms per compiled update, each contestant
in a fresh worker process, the workers taking turns (round after round), so that they share the
machine's pace: the shipped agent on one torch thread, the same on two, and 64-64 networks on one.
Each worker compiles (from the compile cache after the first time), runs 30 updates, then times
rounds of 300 on a random buffer; its figure is its median round.

Part 2, the light episodes (nearly all acting and stepping): one episode's 1000 steps (the actor,
OU noise, the arms, each step's transitions copied out) of the 20 arms in this process, against the
same with the arms split 10 + 10 over this process and a forked one stepping at once (meeting
every 100 steps, where a light episode's one update and the new weights would go; forked: Linux), and
10 arms alone in one process, episode after episode in turn.

Run: python benchmarks/second_core.py [--rounds 5] [--episodes 15]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from update_floor import agent_and_buffer  # beside this file

from ddpg.agent import DDPG
from ddpg.config import load_config
from ddpg.envs.reacher.env import ReacherVectorEnv
from ddpg.noise import Noise

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "reacher.toml"
# label: (torch threads, overrides)
CONTESTANTS = {
    "shipped, 1 thread": (1, []),
    "shipped, 2 threads": (2, []),
    "64-64 networks, 1 thread": (1, ["agent.actor_hidden=[64, 64]", "agent.critic_hidden=[64, 64]"]),
}


def update_ms(threads: int, overrides: list[str]) -> float:
    torch.set_num_threads(threads)
    agent, buffer = agent_and_buffer("reacher.toml", overrides, 33, 4)
    for _ in range(30):
        agent.learn(buffer.sample(256))
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(300):
            out = agent.learn(buffer.sample(256))
        float(out["critic_loss"])  # the last update has run
        rounds.append((time.perf_counter() - start) / 300 * 1e3)
    return float(np.median(rounds))


def acting_parts(arms: int):
    torch.set_num_threads(1)
    config = load_config(CONFIG, ["agent.compile=false"])
    torch.manual_seed(0)
    agent = DDPG(33, -np.ones(4), np.ones(4), config.agent)
    return agent, ReacherVectorEnv(arms), Noise(config.noise, arms, 4, seed=1)


def light_episode(parts, seed: int, meet=None) -> None:
    agent, env, noise = parts
    obs, _ = env.reset(seed=seed)
    noise.reset()
    rows = np.empty((1000, env.num_envs, 72), np.float32)  # obs, action, reward, next obs, terminated
    for t in range(1000):
        actions = np.clip(agent.act(obs) + 0.25 * noise.sample(), -1.0, 1.0)
        next_obs, rewards, terminated, _, _ = env.step(actions.astype(np.float32))
        row = rows[t]
        row[:, :33], row[:, 33:37], row[:, 37], row[:, 38:71], row[:, 71] = obs, actions, rewards, next_obs, terminated
        obs = next_obs
        if meet is not None and (t + 1) % 100 == 0:
            meet.wait()


def other_half(start, meet, episodes: int) -> None:
    parts = acting_parts(10)
    for e in range(episodes):
        start.wait()
        light_episode(parts, e, meet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="turns of each update contestant")
    parser.add_argument("--episodes", type=int, default=15, help="light episodes of each kind")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(update_ms(*CONTESTANTS[args.worker])))
        return

    times: dict[str, list[float]] = {label: [] for label in CONTESTANTS}
    for _ in range(args.rounds):
        for label in CONTESTANTS:
            out = subprocess.run([sys.executable, __file__, "--worker", label], capture_output=True, text=True, check=True)
            times[label].append(json.loads(out.stdout.splitlines()[-1]))
    shipped = np.array(times["shipped, 1 thread"])
    print(f"ms per compiled update, medians of {args.rounds} worker processes taken in turn:")
    for label, ms in times.items():
        ratio = np.median(np.array(ms) / shipped)
        print(f"  {label:26s} {np.median(ms):6.3f} ms (rounds {', '.join(f'{m:.2f}' for m in ms)}); "
              f"against the shipped on 1 thread {ratio:.2f}x the time")

    whole, ten, halves = acting_parts(20), acting_parts(10), acting_parts(10)
    start, meet = mp.Barrier(2), mp.Barrier(2)
    worker = mp.get_context("fork").Process(target=other_half, args=(start, meet, args.episodes))
    worker.start()
    seconds: dict[str, list[float]] = {"20 arms": [], "10 arms": [], "10 + 10 arms": []}
    for e in range(args.episodes):
        for kind, parts in (("20 arms", whole), ("10 arms", ten), ("10 + 10 arms", halves)):
            if kind == "10 + 10 arms":
                start.wait()
            t = time.perf_counter()
            light_episode(parts, e, meet if kind == "10 + 10 arms" else None)
            seconds[kind].append(time.perf_counter() - t)
    worker.join()
    one = np.array(seconds["20 arms"])
    print(f"a light episode's acting and stepping, medians of {args.episodes} episodes taken in turn:")
    for kind, where in (("20 arms", "in one process"), ("10 arms", "in one process"),
                        ("10 + 10 arms", "in two processes at once")):
        ratios = np.array(seconds[kind]) / one
        print(f"  {kind:12s} {where:25s} {np.median(seconds[kind]):.3f} s; per turn {np.median(ratios):.2f}x "
              f"the 20 arms' time ({ratios.min():.2f} to {ratios.max():.2f})")


if __name__ == "__main__":
    main()
