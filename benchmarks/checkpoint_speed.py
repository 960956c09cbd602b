"""The checkpoints of a 100-episode Reacher run, timed: 200,000 transitions (10 episodes of 20 arms)
added before each of 10 checkpoints, the 1,000,000-row buffer full from the 5th; `Trainer.save()` timed
alone (the networks uncompiled: they are not what is measured). Prints each save's seconds, their sum
and the checkpoint folder's size at the end. Run: python benchmarks/checkpoint_speed.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ddpg.config import load_config
from ddpg.trainer import Trainer

CONFIG = Path(__file__).parent.parent / "configs" / "reacher.toml"


def main() -> None:
    rng = np.random.default_rng(0)
    step = [rng.standard_normal((20_000, 33)), rng.uniform(-1, 1, (20_000, 4)), rng.standard_normal(20_000),
            rng.standard_normal((20_000, 33)), np.zeros(20_000)]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(load_config(CONFIG, ["agent.compile=false"]), Path(tmp) / "run")
        seconds = []
        for checkpoint in range(1, 11):
            for _ in range(10):
                trainer.buffer.add(*step)
            trainer.episode = 10 * checkpoint
            start = time.perf_counter()
            trainer.save()
            seconds.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in (Path(tmp) / "run" / "checkpoints").rglob("*") if p.is_file())
        trainer.close()
    print("saves (s): " + " ".join(f"{s:.2f}" for s in seconds) + f"; sum {sum(seconds):.2f} s; "
          f"checkpoints on disk at the end {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
