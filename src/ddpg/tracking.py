"""Metric sinks behind one small interface: CSV (always), TensorBoard and W&B (optional)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.csv"


def repair_csv(path: Path, last_episode: int) -> None:
    """Keep the header and whole rows up to `last_episode`; drop a line a kill cut in half."""
    if not path.exists():
        return
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    if not lines:
        path.unlink()
        return
    header = next(csv.reader([lines[0]]))
    keep = [lines[0]] + [line for line in lines[1:]
                         if len(row := next(csv.reader([line]))) == len(header)
                         and int(row[0]) <= last_episode]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


def read_metrics(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no episodes recorded yet")
    return {key: [float(r[key]) for r in rows] for key in rows[0]}


class Tracker:
    """Writes one row per episode to metrics.csv (flushed at once), and to the optional sinks."""

    def __init__(self, run_dir: Path, config: dict[str, Any], tensorboard: bool, wandb: bool,
                 start_episode: int):
        self.path = run_dir / METRICS_FILE
        repair_csv(self.path, start_episode)
        self._file: io.TextIOWrapper | None = None
        self._writer = None
        self._tb = self._wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_episode + 1)
        if wandb:
            try:
                import wandb as wb
            except ImportError:
                raise ValueError("train.wandb is on but wandb is not installed: pip install 'ddpg[wandb]'") from None
            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wb.init(project="ddpg", dir=str(run_dir), config=config,
                                  name=run_dir.name, resume="allow", id=run_dir.name)

    def log(self, row: dict[str, float]) -> None:
        if self._writer is None:
            new = not self.path.exists()
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            if new:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()
        step = int(row["episode"])
        if self._tb is not None:
            for key, value in row.items():
                if key != "episode":
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(row, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
