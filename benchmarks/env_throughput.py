"""Reacher throughput: our batched env at several arm counts against a SyncVectorEnv of Reacher-v5.

Each repeat times the reference and then every arm count once, so that all of them see the same
load on the machine. Prints, per env, the median over the repeats of vector-steps/s and arm-steps/s,
and at 20 arms the median of the per-repeat ratios to the reference (with their range). Then the
Reacher's NumPy physics (what runs where the C extension is not built) against the compiled one, at
20 arms, interleaved the same way.
Run: python benchmarks/env_throughput.py
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import ddpg  # noqa: F401
from ddpg.envs.reacher import ReacherVectorEnv
from ddpg.envs.reacher import physics as physics_module


def steps_per_second(env: gym.vector.VectorEnv, steps: int) -> float:
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape))
    start = time.perf_counter()
    for a in actions:
        env.step(a.astype(np.float32))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arms", type=int, nargs="+", default=[1, 20, 100, 1000])
    args = parser.parse_args()
    # About 0.2 to 1 s a timing each: 100,000 arm-steps of ours, 500 steps of the reference.
    envs = {"reference": (gym.vector.SyncVectorEnv([lambda: gym.make("Reacher-v5") for _ in range(20)]), 500)}
    envs.update({n: (ReacherVectorEnv(num_envs=n), max(100, 100_000 // n)) for n in args.arms})
    rates = {key: [] for key in envs}
    for _ in range(args.repeats):
        for key, (env, steps) in envs.items():
            rates[key].append(steps_per_second(env, steps))
    reference = np.array(rates["reference"])
    print(f"reference: SyncVectorEnv of 20 Reacher-v5: {np.median(reference):9.1f} vector-steps/s "
          f"{20 * np.median(reference):11.0f} arm-steps/s")
    for n in args.arms:
        rate = np.array(rates[n])
        line = (f"ddpg/Reacher-v0, {n:4d} arms:    {np.median(rate):9.1f} vector-steps/s "
                f"{n * np.median(rate):11.0f} arm-steps/s")
        if n == 20:
            ratio = rate / reference
            line += (f"   ({np.median(ratio):.1f}x the reference; {ratio.min():.1f}x to "
                     f"{ratio.max():.1f}x over {args.repeats} repeats)")
        print(line)
    for env, _ in envs.values():
        env.close()

    compiled = ReacherVectorEnv(num_envs=20)
    physics_module._physics, physics_module._warned = None, True  # as if the extension were not built
    numpy = ReacherVectorEnv(num_envs=20)
    rates = {"compiled": [], "numpy": []}
    for _ in range(args.repeats):
        for key, env in (("compiled", compiled), ("numpy", numpy)):
            rates[key].append(steps_per_second(env, 2000))
    ratio = np.array(rates["compiled"]) / np.array(rates["numpy"])
    print(f"20 arms, compiled physics {np.median(rates['compiled']):.0f} vector-steps/s, NumPy physics "
          f"{np.median(rates['numpy']):.0f}: the NumPy one is {np.median(ratio):.1f}x slower "
          f"({ratio.min():.1f}x to {ratio.max():.1f}x over {args.repeats} repeats)")


if __name__ == "__main__":
    main()
