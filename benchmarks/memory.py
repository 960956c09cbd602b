"""Peak resident memory of a run against its replay buffer's own size, at 20, 100 and 1000 arms.

Each run is `ddpg train` with configs/reacher-N.toml in a process of its own, for one episode more
than it takes to fill the buffer, acting at random (warm-up for the whole run, so that filling the
buffer takes seconds rather than an hour of learning; the networks, batches and optimizer state are
the same few MB either way), with its one checkpoint written at the end: the buffer full and then
saved, the moment a copy would double it. The peak is the process's maximum resident set
(getrusage). Aim (issue 9): peak <= 1.3 x buffer + 500 MB.

Run: python benchmarks/memory.py [--arms 20 100 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ddpg.config import load_config
from ddpg.replay import ReplayBuffer

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def peak_of_run(arms: int, folder: Path) -> tuple[int, int, int]:
    """(peak resident bytes, buffer bytes, episodes) of one run."""
    config_file = ROOT / "configs" / ("reacher.toml" if arms == 20 else f"reacher-{arms}.toml")
    config = load_config(config_file)
    episodes = math.ceil(config.agent.buffer_size / (arms * 1000)) + 1
    buffer = ReplayBuffer.bytes_needed(config.agent.buffer_size, 33, 4)
    proc = subprocess.Popen([sys.executable, "-m", "ddpg.cli", "train", "--config", str(config_file), "--quiet",
                             "--run-dir", str(folder / f"arms{arms}"), f"agent.warmup_steps={10**9}",
                             f"train.episodes={episodes}", f"train.checkpoint_every={episodes}",
                             "train.target_score=none", "train.tensorboard=false"])
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"the {arms}-arm run failed (status {status})")
    return usage.ru_maxrss * 1024, buffer, episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, nargs="+", default=[20, 100, 1000])
    args = parser.parse_args()
    print(f"{'arms':>5} {'episodes':>8} {'buffer MB':>10} {'peak MB':>8} {'peak / buffer':>13} "
          f"{'aim MB (1.3 buffer + 500)':>26}  met")
    with tempfile.TemporaryDirectory() as tmp:
        for arms in args.arms:
            peak, buffer, episodes = peak_of_run(arms, Path(tmp))
            aim = 1.3 * buffer + 500 * MB
            print(f"{arms:>5} {episodes:>8} {buffer / MB:>10.0f} {peak / MB:>8.0f} {peak / buffer:>13.2f} "
                  f"{aim / MB:>26.0f}  {'yes' if peak <= aim else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
