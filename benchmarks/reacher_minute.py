"""`make train`'s run (configs/reacher.toml) on several seeds, one after another, each timed from its
command's start: the figures of the aims of docs/benchmarks.md's "Reacher in about a minute".

Each seed runs `ddpg train --config configs/reacher.toml --seed S --quiet` in a process of its own,
so that its time includes start-up and compiling as a user's would; the compile cache is whatever the
machine has (--cold: an empty one for each seed). Per seed: the solve episode, the trailing average
at the end, the lowest of the last 20 episodes, the first episodes at 30 and at 35, the episodes at
full learning effort, the updates, the command's wall time, and the median seconds of a full episode
(leaving out the first, which waits for the compiler) and of a light one. Overrides after the options
go to every run (e.g. agent.actor_lr=2e-3).

Run: python benchmarks/reacher_minute.py [--seeds 0 1 2 3 4] [--cold] [--keep DIR] [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ddpg.rundir import read_outcome
from ddpg.tracking import METRICS_FILE, read_metrics

CONFIG = Path(__file__).parent.parent / "configs" / "reacher.toml"


def summarize(run_dir: Path, wall: float) -> dict:
    m = read_metrics(run_dir / METRICS_FILE)
    scores, seconds = m["score"], m["seconds"]
    per_episode = np.diff(m["updates"], prepend=0)
    full = per_episode >= per_episode.max() / 2
    first = lambda level: int(np.argmax(scores >= level)) + 1 if (scores >= level).any() else None  # noqa: E731
    return {"solved at": (read_outcome(run_dir) or {}).get("solved_at"),
            "trailing avg": round(float(m["trailing_avg"][-1]), 2),
            "lowest of last 20": round(float(scores[-20:].min()), 1),
            "first >= 30": first(30), "first >= 35": first(35), "full-effort episodes": int(full.sum()),
            "updates": int(m["updates"][-1]), "command s": round(wall, 1),
            # the first episode waits for the compiler
            "full s (median)": round(float(np.median(seconds[1:][full[1:]])), 2) if full[1:].any() else None,
            "light s (median)": round(float(np.median(seconds[~full])), 3) if (~full).any() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cold", action="store_true", help="an empty compile cache for each seed")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", help="key=value, for every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        table = []
        for seed in args.seeds:
            env = dict(os.environ)
            if args.cold:
                env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / f"cache-{seed}")
            run_dir = root / f"seed{seed}"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ddpg.cli", "train", "--config", str(CONFIG), "--seed", str(seed),
                            "--run-dir", str(run_dir), "--quiet", *args.overrides], env=env, check=True)
            row = {"seed": seed, **summarize(run_dir, time.perf_counter() - start)}
            table.append(row)
            print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    print("| " + " | ".join(table[0]) + " |\n|" + "---|" * len(table[0]))
    for row in table:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
