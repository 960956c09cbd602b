"""Reacher calibration against the original: scripted controller and random play, several seeds.

Random play draws a standard normal clipped to [-1, 1], as the course notebook does; the original
build printed means of 0.077 and 0.098. Run: python benchmarks/reacher_calibration.py
"""

from __future__ import annotations

import argparse

import numpy as np

from ddpg.envs.reacher import ReacherSim
from ddpg.envs.reacher.model import EPISODE_DECISIONS
from ddpg.envs.scripted import scripted_actions


def episode(sim: ReacherSim, rng: np.random.Generator, policy) -> np.ndarray:
    obs, total = sim.reset(rng), np.zeros(sim.num_arms)
    for _ in range(EPISODE_DECISIONS):
        obs, reward = sim.step(np.clip(policy(obs, rng), -1, 1))
        total += reward
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    sim = ReacherSim(20)
    policies = {
        "scripted": lambda obs, rng: scripted_actions(obs),
        "scripted, torque sign flipped": lambda obs, rng: -scripted_actions(obs),
        "random (clipped normal)": lambda obs, rng: rng.standard_normal((len(obs), 4)),
    }
    for name, policy in policies.items():
        scores = [episode(sim, np.random.default_rng(seed), policy) for seed in range(args.seeds)]
        means = [s.mean() for s in scores]
        zeros = np.mean([(s == 0).mean() for s in scores])
        print(f"{name:30s} mean over 20 arms per seed: {' '.join(f'{m:.3f}' for m in means)}; "
              f"mean {np.mean(means):.3f} +- {np.std(means):.3f}; arms at 0: {zeros:.0%}")


if __name__ == "__main__":
    main()
