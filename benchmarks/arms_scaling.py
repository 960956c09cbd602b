"""Where the time goes with 20, 100 and 1000 arms: environment, acting, storing, learning.

For each arm count, with configs/reacher.toml otherwise: the median cost of one environment step,
one actor forward pass for all arms (with noise), one replay insert of all arms' transitions, and
one learner update; then the seconds an episode of 1000 steps spends in each under the config's
schedule. Run: python benchmarks/arms_scaling.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ddpg.config import load_config
from ddpg.trainer import Trainer

CONFIG = Path(__file__).parent.parent / "configs" / "reacher.toml"


def median_seconds(fn, rounds: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        times.append((time.perf_counter() - start) / rounds)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arms", type=int, nargs="+", default=[20, 100, 1000])
    args = parser.parse_args()
    for n in args.arms:
        config = load_config(CONFIG, [f"env.num_envs={n}", "agent.buffer_size=200000", "train.tensorboard=false"])
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(config, Path(tmp))
        env, agent, buffer = trainer.env, trainer.agent, trainer.buffer
        obs, _ = env.reset(seed=0)
        actions = np.zeros((n, 4), np.float32)
        rounds = max(5, 2000 // n)
        env_s = median_seconds(lambda: env.step(actions), rounds)
        act_s = median_seconds(lambda: trainer._actions(obs, 1.0), rounds)
        rewards, done = np.zeros(n), np.zeros(n, bool)
        add_s = median_seconds(lambda: buffer.add(obs, actions, rewards, obs, done), rounds)
        while len(buffer) < 50_000:
            buffer.add(obs, actions, rewards, obs, done)
        a = config.agent
        learn_s = median_seconds(lambda: agent.learn(buffer.sample(a.batch_size)), 50)
        steps = 1000
        split = {"environment": env_s * steps, "acting": act_s * steps, "storing": add_s * steps,
                 "learning": learn_s * a.updates_per_learn * steps / a.learn_every}
        total = sum(split.values())
        print(f"{n:5d} arms: {1 / env_s:7.0f} env steps/s ({n / env_s:8.0f} arm-steps/s), "
              f"{1 / learn_s:5.0f} updates/s (batch {a.batch_size}); one episode "
              f"{total:5.1f} s = " + ", ".join(f"{k} {v:5.2f} s ({v / total:.0%})" for k, v in split.items()),
              flush=True)
        env.close()
    # The proposed fix for a learner-bound run: more data per update rather than more updates.
    big = median_seconds(lambda: agent.learn(buffer.sample(4 * a.batch_size)), 50)
    print(f"one update at batch {4 * a.batch_size}: {big * 1e3:.1f} ms, {big / learn_s:.1f}x the cost of "
          f"batch {a.batch_size} ({learn_s * 1e3:.1f} ms) for 4x the data")


if __name__ == "__main__":
    main()
