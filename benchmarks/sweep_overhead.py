"""What a sweep costs beyond its trials: 4 short Reacher runs through `ddpg sweep` (2 at a time on
this 2-core machine) against the same 4 runs back to back with `ddpg train`.

- wall ratio: the sweep's wall time over the back-to-back wall time (aim, issue 8: <= 0.6 on 2 cores);
- fixed cost per trial: (sweep wall - the trials' own training time / concurrency) / trials, where a
  trial's training time is its outcome.json wall_seconds: what Ray, the worker processes, their
  imports and the summary add per trial (aim: <= 5 s).

The sweep runs in a network namespace of its own with only loopback (root and `unshare` needed), so
Ray binds 127.0.0.1 and everything it starts ends with the namespace.

Run: python benchmarks/sweep_overhead.py [--episodes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [0, 1, 2, 3]
CONCURRENT = 2


def back_to_back(folder: Path, episodes: int) -> float:
    start = time.perf_counter()
    for seed in SEEDS:
        subprocess.run([sys.executable, "-m", "ddpg.cli", "train", "--config", "configs/reacher.toml", "--quiet",
                        "--run-dir", str(folder / f"train-{seed}"), "--seed", str(seed), "--episodes", str(episodes),
                        "train.tensorboard=false"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def sweep(folder: Path, episodes: int) -> tuple[float, float]:
    """(wall seconds, the trials' summed training seconds)."""
    (folder / "sweep.toml").write_text(
        f'base = "{ROOT / "configs/reacher.toml"}"\n[overrides]\n"train.tensorboard" = false\n'
        f'[sweep]\nseeds = {SEEDS}\nepisodes = {episodes}\nmax_concurrent = {CONCURRENT}\n')
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    env = dict(os.environ, HOME=str(folder / "home"), RAY_TMPDIR=str(ray_tmp))
    start = time.perf_counter()
    subprocess.run(["unshare", "--kill-child", "-n", "-p", "-f", "-m", "--mount-proc", "sh", "-c",
                    'ip link set lo up && exec "$@"', "sh", sys.executable, "-m", "ddpg.cli", "sweep",
                    str(folder / "sweep.toml"), "--out", str(folder / "out")],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    trials = sorted((folder / "out").glob("*/trials/*/outcome.json"))
    assert len(trials) == len(SEEDS), trials
    return wall, sum(json.loads(p.read_text())["wall_seconds"] for p in trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ratios, fixed = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            train = back_to_back(Path(tmp), args.episodes)
            wall, trained = sweep(Path(tmp), args.episodes)
        ratios.append(wall / train)
        fixed.append((wall - trained / CONCURRENT) / len(SEEDS))
        print(f"repeat {repeat + 1}: back to back {train:.1f} s, sweep {wall:.1f} s (trials trained "
              f"{trained:.1f} s in all): ratio {ratios[-1]:.2f}, fixed cost {fixed[-1]:.1f} s a trial", flush=True)
    median = sorted(ratios)[len(ratios) // 2], sorted(fixed)[len(fixed) // 2]
    print(f"median over {args.repeats}: wall ratio {median[0]:.2f} (aim <= 0.6), "
          f"fixed cost {median[1]:.1f} s a trial (aim <= 5 s)")


if __name__ == "__main__":
    main()
