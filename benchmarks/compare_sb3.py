"""Stable-Baselines3's DDPG against ours on Pendulum-v1 with identical (rl-zoo) settings, same run.

Settings: 20,000 steps, 10,000 warm-up steps of random actions, 400-300 networks (ours: no batch
norm, ReLU, as SB3's), batch 256, lr 1e-3, gamma 0.98, tau 0.005, Gaussian noise 0.1, one update per
step, no gradient clipping, the same number of torch threads (--threads, default 1 as in our
configs). Prints wall times, their ratio, and the deterministic-evaluation return
(10 episodes) of both, per seed and summarized; then our learner's updates/s against a plain-PyTorch
update loop of the same shapes (the ceiling).

Run: pip install 'ddpg[bench]'; python benchmarks/compare_sb3.py [--seeds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ddpg.config import load_config
from ddpg.replay import ReplayBuffer
from ddpg.trainer import Trainer

STEPS, WARMUP, EVAL_EPISODES = 20_000, 10_000, 10


def evaluate(act, seed: int) -> float:
    env = gym.make("Pendulum-v1")
    returns = []
    for e in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 + 100 * seed + e)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run_sb3(seed: int) -> tuple[float, float]:
    from stable_baselines3 import DDPG
    from stable_baselines3.common.noise import NormalActionNoise

    env = gym.make("Pendulum-v1")
    model = DDPG("MlpPolicy", env, learning_rate=1e-3, buffer_size=200_000, learning_starts=WARMUP,
                 batch_size=256, tau=0.005, gamma=0.98, train_freq=1, gradient_steps=1,
                 action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
                 policy_kwargs={"net_arch": [400, 300]}, seed=seed, device="cpu")
    start = time.perf_counter()
    model.learn(STEPS)
    seconds = time.perf_counter() - start
    return seconds, evaluate(lambda obs: model.predict(obs, deterministic=True)[0], seed)


def run_ours(seed: int, threads: int) -> tuple[float, float]:
    config = load_config(Path(__file__).parent.parent / "configs" / "pendulum.toml",
                         [f"train.seed={seed}", f"train.threads={threads}", "train.target_score=none",
                          f"train.episodes={STEPS // 200}",
                          "train.tensorboard=false", "train.save_buffer=false"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp))
        start = time.perf_counter()
        trainer.train(progress=False)
        seconds = time.perf_counter() - start
    return seconds, evaluate(lambda obs: trainer.agent.act(obs[None])[0], seed)


def plain_updates_per_second(obs_dim: int, act_dim: int, batch: int, seconds: float = 5.0) -> float:
    """The bare DDPG update on a fixed random batch: no sampling, no bookkeeping. The ceiling."""
    actor = nn.Sequential(nn.Linear(obs_dim, 400), nn.ReLU(), nn.Linear(400, 300), nn.ReLU(),
                          nn.Linear(300, act_dim), nn.Tanh())
    first = nn.Sequential(nn.Linear(obs_dim, 400), nn.ReLU())
    head = nn.Sequential(nn.Linear(400 + act_dim, 300), nn.ReLU(), nn.Linear(300, 1))
    critic = nn.ModuleList([first, head])
    q = lambda c, s, a: c[1](torch.cat([c[0](s), a], -1))  # noqa: E731
    actor_t, critic_t = copy.deepcopy(actor), copy.deepcopy(critic)
    opt_a, opt_c = torch.optim.Adam(actor.parameters(), 1e-3), torch.optim.Adam(critic.parameters(), 1e-3)
    s, a, r, s2 = torch.randn(batch, obs_dim), torch.rand(batch, act_dim), torch.randn(batch, 1), torch.randn(batch, obs_dim)
    pairs = [(list(t.parameters()), list(l.parameters())) for t, l in ((actor_t, actor), (critic_t, critic))]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        with torch.no_grad():
            y = r + 0.98 * q(critic_t, s2, actor_t(s2))
        loss = (q(critic, s, a) - y).pow(2).mean()
        opt_c.zero_grad()
        loss.backward()
        opt_c.step()
        loss = -q(critic, s, actor(s)).mean()
        opt_a.zero_grad()
        loss.backward()
        opt_a.step()
        with torch.no_grad():
            for t, l in pairs:
                torch._foreach_lerp_(t, l, 0.005)
        n += 1
    return n / (time.perf_counter() - start)


def our_updates_per_second(obs_dim: int, act_dim: int, batch: int, seconds: float = 5.0) -> float:
    from ddpg.agent import DDPG
    config = load_config(Path(__file__).parent.parent / "configs" / "pendulum.toml").agent
    agent = DDPG(obs_dim, -np.ones(act_dim), np.ones(act_dim), config)
    buffer = ReplayBuffer(100_000, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    buffer.add(rng.standard_normal((100_000, obs_dim)), rng.uniform(-1, 1, (100_000, act_dim)),
               rng.standard_normal(100_000), rng.standard_normal((100_000, obs_dim)), np.zeros(100_000))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        agent.learn(buffer.sample(batch))
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (0: torch's default)")
    args = parser.parse_args()
    # Set once for both: our trainer sets train.threads for the whole process, so without this SB3's
    # first seed would run on torch's default and its later seeds on ours.
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for seed in range(args.seeds):
        sb3_s, sb3_r = run_sb3(seed)
        our_s, our_r = run_ours(seed, args.threads)
        rows.append((sb3_s, sb3_r, our_s, our_r))
        print(f"seed {seed}: SB3 {sb3_s:6.1f} s, return {sb3_r:7.1f} | ours {our_s:6.1f} s, "
              f"return {our_r:7.1f} | time ratio ours/SB3 {our_s / sb3_s:.2f}", flush=True)
    r = np.array(rows)
    print(f"SB3:  {r[:, 0].mean():6.1f} +- {r[:, 0].std():4.1f} s, return {r[:, 1].mean():7.1f} +- {r[:, 1].std():5.1f}")
    print(f"ours: {r[:, 2].mean():6.1f} +- {r[:, 2].std():4.1f} s, return {r[:, 3].mean():7.1f} +- {r[:, 3].std():5.1f}")
    print(f"time ratio ours/SB3: median {np.median(r[:, 2] / r[:, 0]):.2f}")
    for obs_dim, act_dim, batch in ((3, 1, 256), (33, 4, 256)):
        ours, plain = our_updates_per_second(obs_dim, act_dim, batch), plain_updates_per_second(obs_dim, act_dim, batch)
        print(f"updates/s, 400-300, batch {batch}, obs {obs_dim}, act {act_dim}: ours {ours:.0f}, "
              f"plain PyTorch loop {plain:.0f} (ours at {ours / plain:.0%} of the ceiling)")


if __name__ == "__main__":
    main()
