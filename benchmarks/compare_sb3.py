"""Stable-Baselines3's DDPG (or TD3) against ours on a Gymnasium task with identical (rl-zoo) settings,
same run.

Settings (rl-zoo's DDPG and TD3): 400-300 networks (ours: no batch norm, ReLU, the action at the critic's
input, as SB3's), batch 256, lr 1e-3, tau 0.005, Gaussian noise 0.1 (of the half action range: SB3
adds it to the action scaled to [-1, 1]), one update per step after the warm-up of random actions,
no gradient clipping, the same number of torch threads (--threads, default 1 as in our configs);
per task (TASKS): the step budget, warm-up, gamma and buffer. TD3 (--algo td3, our
configs/td3-halfcheetah.toml) adds SB3's defaults: twin critics, target policy noise 0.2 clipped at 0.5,
the actor and targets every second update. Our run ends at
the end of the episode in which the budget is reached (at most one episode more than SB3's).
Prints wall times, their ratio, and the deterministic-evaluation return (10 episodes) of both, per
seed and summarized; then, for Pendulum, our learner's updates/s against a plain-PyTorch update
loop of the same shapes (the ceiling).

Run: pip install 'ddpg[bench]'; python benchmarks/compare_sb3.py [--task InvertedPendulum-v5] [--algo td3] [--seeds 3]
     [--first-seed 0] [--threads 1]
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

EVAL_EPISODES = 10
CONFIGS = Path(__file__).parent.parent / "configs"
# Our config holding each algorithm's rl-zoo settings; the task's own figures (TASKS) go on top.
BASES = {"ddpg": CONFIGS / "pendulum.toml", "td3": CONFIGS / "td3-halfcheetah.toml"}
# env id: (step budget, warm-up steps, gamma, buffer size)
TASKS = {
    "Pendulum-v1": (20_000, 10_000, 0.98, 200_000),
    "InvertedPendulum-v5": (20_000, 1_000, 0.99, 200_000),
    "HalfCheetah-v5": (100_000, 10_000, 0.99, 1_000_000),
    "Hopper-v5": (100_000, 10_000, 0.99, 1_000_000),
}


def evaluate(task: str, act, seed: int) -> float:
    env = gym.make(task)
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


def run_sb3(task: str, seed: int, algo: str) -> tuple[float, float]:
    from stable_baselines3 import DDPG, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    steps, warmup, gamma, buffer = TASKS[task]
    env = gym.make(task)
    act_dim = env.action_space.shape[0]
    model = {"ddpg": DDPG, "td3": TD3}[algo]("MlpPolicy", env, learning_rate=1e-3, buffer_size=buffer, learning_starts=warmup,
                 batch_size=256, tau=0.005, gamma=gamma, train_freq=1, gradient_steps=1,
                 action_noise=NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim)),
                 policy_kwargs={"net_arch": [400, 300]}, seed=seed, device="cpu")
    start = time.perf_counter()
    model.learn(steps)
    seconds = time.perf_counter() - start
    return seconds, evaluate(task, lambda obs: model.predict(obs, deterministic=True)[0], seed)


def run_ours(task: str, seed: int, threads: int, algo: str) -> tuple[float, float]:
    steps, warmup, gamma, buffer = TASKS[task]
    config = load_config(BASES[algo],
                         [f"env.id={task}", f"agent.gamma={gamma}", f"agent.warmup_steps={warmup}",
                          f"agent.buffer_size={buffer}", f"train.steps={steps}", f"train.episodes={steps}",
                          f"train.seed={seed}", f"train.threads={threads}", "train.target_score=none", "train.window=1",
                          "train.eval_every_steps=0", "train.tensorboard=false", "train.save_buffer=false",
                          "train.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp))
        start = time.perf_counter()
        trainer.train(progress=False)
        seconds = time.perf_counter() - start
    return seconds, evaluate(task, lambda obs: trainer.agent.act(obs[None])[0], seed)


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
    config = load_config(BASES["ddpg"]).agent
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
    parser.add_argument("--task", choices=list(TASKS), default="Pendulum-v1")
    parser.add_argument("--algo", choices=list(BASES), default="ddpg")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed, first-seed + 1, ...: a long comparison split over processes or machines")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (0: torch's default)")
    args = parser.parse_args()
    # Set once for both: our trainer sets train.threads for the whole process, so without this SB3's
    # first seed would run on torch's default and its later seeds on ours.
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.task}, {args.algo}: {TASKS[args.task][0]:,} steps, {args.seeds} seeds", flush=True)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        sb3_s, sb3_r = run_sb3(args.task, seed, args.algo)
        our_s, our_r = run_ours(args.task, seed, args.threads, args.algo)
        rows.append((sb3_s, sb3_r, our_s, our_r))
        print(f"seed {seed}: SB3 {sb3_s:6.1f} s, return {sb3_r:7.1f} | ours {our_s:6.1f} s, "
              f"return {our_r:7.1f} | time ratio ours/SB3 {our_s / sb3_s:.2f}", flush=True)
    r = np.array(rows)
    print(f"SB3:  {r[:, 0].mean():6.1f} +- {r[:, 0].std():4.1f} s, return {r[:, 1].mean():7.1f} +- {r[:, 1].std():5.1f}")
    print(f"ours: {r[:, 2].mean():6.1f} +- {r[:, 2].std():4.1f} s, return {r[:, 3].mean():7.1f} +- {r[:, 3].std():5.1f}")
    print(f"time ratio ours/SB3: median {np.median(r[:, 2] / r[:, 0]):.2f}")
    if args.task != "Pendulum-v1" or args.algo != "ddpg":
        return
    for obs_dim, act_dim, batch in ((3, 1, 256), (33, 4, 256)):
        ours, plain = our_updates_per_second(obs_dim, act_dim, batch), plain_updates_per_second(obs_dim, act_dim, batch)
        print(f"updates/s, 400-300, batch {batch}, obs {obs_dim}, act {act_dim}: ours {ours:.0f}, "
              f"plain PyTorch loop {plain:.0f} (ours at {ours / plain:.0%} of the ceiling)")


if __name__ == "__main__":
    main()
