"""Prioritized against uniform replay: time to sample a batch and update its priorities.

For 1e5 and 1e6 stored Reacher transitions (33 observations, 4 actions), batch 256: the median over
--repeats rounds of the time per (sample + update_priorities), both buffers measured in the same
run, and their ratio. Run: python benchmarks/replay_speed.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddpg.replay import PrioritizedReplayBuffer, ReplayBuffer


def filled(buffer: ReplayBuffer, n: int) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        buffer.add(rng.standard_normal((m, 33)), rng.uniform(-1, 1, (m, 4)), rng.random(m),
                   rng.standard_normal((m, 33)), np.zeros(m))
    return buffer


def microseconds_per_round(buffer: ReplayBuffer, batch: int, rounds: int) -> float:
    td = torch.rand(batch)
    start = time.perf_counter()
    for _ in range(rounds):
        sample = buffer.sample(batch)
        buffer.update_priorities(sample.indices, td)
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for n in (100_000, 1_000_000):
        uniform, prioritized = filled(ReplayBuffer(n, 33, 4), n), filled(PrioritizedReplayBuffer(n, 33, 4), n)
        u, p = [], []
        for _ in range(args.repeats):
            u.append(microseconds_per_round(uniform, args.batch, 300))
            p.append(microseconds_per_round(prioritized, args.batch, 300))
        ratios = np.array(p) / np.array(u)
        print(f"{n:>9,} transitions, batch {args.batch}: uniform {np.median(u):6.0f} us, prioritized "
              f"{np.median(p):6.0f} us per sample+update; ratio median {np.median(ratios):.2f} "
              f"(min {ratios.min():.2f}, max {ratios.max():.2f})")


if __name__ == "__main__":
    main()
