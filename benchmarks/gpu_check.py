"""Every GPU figure of issue 21 in one run, for whoever has a machine with an NVIDIA GPU (at most 8
minutes on one GPU of the H100 class). Prints, each with the CPU figure measured in the same run:

1. the tests marked `cuda` (pytest -m cuda);
2. learner updates/s at the default shapes (20 arms: obs 33, act 4; batch 256, 128-128 layer norm),
   compiled: on CUDA as a CUDA graph, on the CPU with one thread;
3. one episode of 1000 arms (configs/reacher-1000.toml) on CUDA and on the CPU (after one episode each
   that compiles);
4. 15 episodes of the 20-arm default (configs/reacher.toml) on CUDA: the scores per episode (30 is
   reached by about episode 10-15 on the CPU);
5. exact resume on CUDA: a run killed after its second checkpoint and resumed ends with the same
   networks, bit for bit, as the same run uninterrupted.

Aims (issue 21), against this project's 2-core CPU (docs/benchmarks.md): the 20-arm learner at least
3x the updates/s, the 1000-arm episode at least 5x faster.

Run: python benchmarks/gpu_check.py [--skip-tests]
On the lent GPU machine (no internet, its own CUDA torch): bash benchmarks/gpu_setup.sh first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["train.tensorboard=false"]
# A run of the trainer in a process of its own, as `ddpg train` without the plot at its end (the GPU
# machine gets no matplotlib): python -c TRAIN RUN_DIR|--resume RUN_DIR OVERRIDES...
TRAIN = """
import sys
from pathlib import Path
from ddpg.config import load_config
from ddpg.trainer import Trainer
if sys.argv[1] == "--resume":
    trainer = Trainer.resume(Path(sys.argv[2]))
else:
    trainer = Trainer(load_config("configs/reacher.toml", sys.argv[2:]), Path(sys.argv[1]))
trainer.train(progress=False)
"""


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def cuda_tests() -> None:
    section("1. the tests marked cuda")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True)
    print("\n".join(done.stdout.strip().splitlines()[-15:]), flush=True)


def updates_per_second(device: str, rounds: int = 7) -> tuple[float, float]:
    """(updates/s, seconds of the first 50 updates, compiling included) of the compiled default update."""
    from ddpg.agent import DDPG
    from ddpg.config import load_config
    from ddpg.replay import ReplayBuffer

    config = load_config(ROOT / "configs" / "reacher.toml", [*QUIET, f"train.device={device}"])
    agent = DDPG(33, -np.ones(4), np.ones(4), config.agent, device=device)
    buffer = ReplayBuffer(100_000, 33, 4, device=device)
    rng = np.random.default_rng(0)
    n = 100_000
    buffer.add(rng.standard_normal((n, 33)), rng.uniform(-1, 1, (n, 4)), rng.standard_normal(n),
               rng.standard_normal((n, 33)), np.zeros(n))

    def run(count: int) -> float:
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(count):
            agent.learn(buffer.sample(256))
        sync()
        return time.perf_counter() - start
    first = run(50)
    rates = [200 / run(200) for _ in range(rounds)]
    return float(np.median(rates)), first


def learner() -> None:
    section("2. learner updates/s, default shapes, compiled (CUDA: as a CUDA graph)")
    torch.set_num_threads(1)
    cpu, cpu_first = updates_per_second("cpu")
    cuda, cuda_first = updates_per_second("cuda")
    print(f"CPU (1 thread): {cpu:.0f} updates/s (first 50: {cpu_first:.1f} s); CUDA: {cuda:.0f} updates/s "
          f"(first 50: {cuda_first:.1f} s); CUDA / CPU {cuda / cpu:.2f}x", flush=True)


def episode_seconds(config_file: str, device: str, episodes: int) -> list[float]:
    """Seconds of each of `episodes` episodes of the real trainer (the first one compiles)."""
    from ddpg.config import load_config
    from ddpg.trainer import Trainer

    config = load_config(ROOT / "configs" / config_file, [*QUIET, f"train.device={device}", "train.save_buffer=false"])
    trainer = Trainer(config, Path(tempfile.mkdtemp()) / "run")
    times = []
    for _ in range(episodes):
        start = time.perf_counter()
        trainer.run_episode()
        trainer.episode += 1
        times.append(time.perf_counter() - start)
    trainer.close()
    return times


def thousand_arms() -> None:
    section("3. one episode of 1000 arms (configs/reacher-1000.toml)")
    cpu = episode_seconds("reacher-1000.toml", "cpu", 2)
    cuda = episode_seconds("reacher-1000.toml", "cuda", 3)
    print(f"CPU: {cpu[-1]:.2f} s (first, compiling: {cpu[0]:.1f} s); CUDA: {np.median(cuda[1:]):.2f} s "
          f"(first: {cuda[0]:.1f} s); CPU / CUDA {cpu[-1] / np.median(cuda[1:]):.2f}x", flush=True)


def learning() -> None:
    section("4. 15 episodes of the 20-arm default on CUDA")
    run = Path(tempfile.mkdtemp()) / "run"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", TRAIN, str(run), "train.episodes=15", "train.device=cuda", *QUIET], cwd=ROOT,
                   check=True)
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    scores = [float(line.split(",")[header.index("score")]) for line in lines[1:]]
    first30 = next((i + 1 for i, s in enumerate(scores) if s >= 30), None)
    print("scores: " + ", ".join(f"{s:.1f}" for s in scores), flush=True)
    print(f"30 first reached at episode {first30}; {time.perf_counter() - start:.0f} s", flush=True)


def exact_resume() -> None:
    section("5. exact resume on CUDA")
    from ddpg.checkpoint import load_checkpoint

    folder = Path(tempfile.mkdtemp())
    options = ["env.num_envs=4", "train.device=cuda", "train.checkpoint_every=1", "agent.learn_every=20",
               "train.episodes=4", *QUIET]
    train = [sys.executable, "-c", TRAIN]
    subprocess.run([*train, str(folder / "whole"), *options], cwd=ROOT, check=True)
    proc = subprocess.Popen([*train, str(folder / "killed"), *options], cwd=ROOT)
    while not (folder / "killed" / "checkpoints" / "episode_000002.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([*train, "--resume", str(folder / "killed")], cwd=ROOT, check=True)
    a, b = (load_checkpoint(folder / name / "checkpoints" / "episode_000004.pt") for name in ("whole", "killed"))
    same = all(torch.equal(v, b["agent"][part][k]) for part in ("actor", "critic", "actor_target", "critic_target")
               for k, v in a["agent"][part].items())
    print(f"killed after episode 2 and resumed: final networks {'identical' if same else 'DIFFERENT'} to the "
          f"uninterrupted run's; scores {'identical' if a['scores'] == b['scores'] else 'DIFFERENT'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (torch.cuda.is_available() is False)")
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cpus": os.cpu_count()}), flush=True)
    start = time.perf_counter()
    if not args.skip_tests:
        cuda_tests()
    learner()
    thousand_arms()
    learning()
    exact_resume()
    print(f"\ngpu_check: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
