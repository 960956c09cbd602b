"""How fast one DDPG update could ever be on this CPU: the time of its matrix products alone.

The matrix products of one update (`DDPG.learn` on a batch, as shipped, eager) are recorded with
their shapes by torch's profiler, then each is run alone on random inputs of the same shapes, back
to back, many times (contiguous inputs: the update's transposed views of these shapes ran at the same
speed within 2% on this machine). Their summed median time is a floor: the update also needs activations, the
losses, Adam and the soft update, so it can never be faster without doing less arithmetic or doing
it in lower precision, both of which would change what is learned. Printed per shape: the update's
GFLOP (torch's FlopCounterMode), the products' rate, the floor, the highest updates/s it allows,
and the shipped update's own updates/s measured in the same run.

Run: python benchmarks/update_floor.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from ddpg.agent import DDPG
from ddpg.config import load_config
from ddpg.replay import ReplayBuffer

ROOT = Path(__file__).resolve().parent.parent
BATCH = 256
# name: (config file, overrides, obs dim, act dim)
SHAPES = {
    "Reacher default, 128-128 layer norm": ("reacher.toml", ["agent.compile=false"], 33, 4),
    "400-300 no norm, obs 33, act 4": ("reacher.toml", ["agent.compile=false", "agent.actor_hidden=[400, 300]",
                                                        "agent.critic_hidden=[400, 300]", "agent.layer_norm=false"],
                                       33, 4),
    "Pendulum (rl-zoo), 400-300, obs 3, act 1": ("pendulum.toml", [], 3, 1),
}
PRODUCTS = {"aten::mm", "aten::addmm"}


def agent_and_buffer(config_file: str, overrides: list[str], obs_dim: int, act_dim: int):
    config = load_config(ROOT / "configs" / config_file, overrides).agent
    agent = DDPG(obs_dim, -np.ones(act_dim), np.ones(act_dim), config)
    buffer = ReplayBuffer(10_000, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    buffer.add(rng.standard_normal((10_000, obs_dim)), rng.uniform(-1, 1, (10_000, act_dim)),
               rng.standard_normal(10_000), rng.standard_normal((10_000, obs_dim)), np.zeros(10_000))
    return agent, buffer


def products(agent: DDPG, buffer: ReplayBuffer) -> list[tuple[str, list[list[int]]]]:
    """(op, input shapes) of every matrix product in one update."""
    batch = buffer.sample(BATCH)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        agent.learn(batch)
    return [(e.name, e.input_shapes) for e in prof.events() if e.name in PRODUCTS]


def time_products(calls: list[tuple[str, list[list[int]]]], repeats: int, n: int = 200) -> float:
    """Median over `repeats` of the seconds of all `calls` run back to back."""
    runs = [partial(torch.mm if name == "aten::mm" else torch.addmm, *(torch.randn(s) for s in shapes[:3]))
            for name, shapes in calls]
    for run in runs * 10:
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            for run in runs:
                run()
        seconds.append((time.perf_counter() - start) / n)
    return float(np.median(seconds))


def updates_per_second(agent: DDPG, buffer: ReplayBuffer, repeats: int, n: int = 200) -> float:
    for _ in range(20):
        agent.learn(buffer.sample(BATCH))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            agent.learn(buffer.sample(BATCH))
        rates.append(n / (time.perf_counter() - start))
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {BATCH}, {args.threads} torch thread(s), medians of {args.repeats}")
    for name, (config_file, overrides, obs_dim, act_dim) in SHAPES.items():
        agent, buffer = agent_and_buffer(config_file, overrides, obs_dim, act_dim)
        calls = products(agent, buffer)
        with FlopCounterMode(display=False) as counter:
            agent.learn(buffer.sample(BATCH))
        gflop = counter.get_total_flops() / 1e9
        floor = time_products(calls, args.repeats)
        shipped = updates_per_second(agent, buffer, args.repeats)
        print(f"{name}: {len(calls)} matrix products, {gflop:.3f} GFLOP an update; products alone "
              f"{floor * 1e3:.2f} ms ({gflop / floor:.0f} GFLOP/s), so at most {1 / floor:.0f} updates/s; "
              f"the shipped update {shipped:.0f} updates/s ({shipped * floor:.0%} of the floor's rate)")


if __name__ == "__main__":
    main()
