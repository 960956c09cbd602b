"""Reacher throughput: our batched env at several arm counts against a SyncVectorEnv of Reacher-v5.

Prints vector-steps/s and arm-steps/s (medians of --repeats runs), and the ratio at 20 arms
against the reference, measured in the same run. Run: python benchmarks/env_throughput.py
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import ddpg  # noqa: F401
from ddpg.envs.reacher import ReacherVectorEnv


def steps_per_second(env: gym.vector.VectorEnv, steps: int) -> float:
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape))
    start = time.perf_counter()
    for a in actions:
        env.step(a.astype(np.float32))
    return steps / (time.perf_counter() - start)


def median_rate(make, steps: int, repeats: int) -> float:
    env = make()
    rate = float(np.median([steps_per_second(env, steps) for _ in range(repeats)]))
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arms", type=int, nargs="+", default=[1, 20, 100, 1000])
    args = parser.parse_args()
    reference = median_rate(
        lambda: gym.vector.SyncVectorEnv([lambda: gym.make("Reacher-v5") for _ in range(20)]),
        500, args.repeats)
    print(f"reference: SyncVectorEnv of 20 Reacher-v5: {reference:9.1f} vector-steps/s "
          f"{20 * reference:11.0f} arm-steps/s")
    for n in args.arms:
        rate = median_rate(lambda: ReacherVectorEnv(num_envs=n), max(20, 20_000 // n), args.repeats)
        line = f"ddpg/Reacher-v0, {n:4d} arms:    {rate:9.1f} vector-steps/s {n * rate:11.0f} arm-steps/s"
        if n == 20:
            line += f"   ({rate / reference:.1f}x the reference)"
        print(line)


if __name__ == "__main__":
    main()
