"""Metric sinks behind one small interface: CSV (always), TensorBoard and W&B (optional); and the
repair of a metrics file from a checkpoint's score history."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .scores import trailing_average

METRICS_FILE = "metrics.csv"
# Every row has every column (NaN where a value does not apply), so a damaged header can be rebuilt.
COLUMNS = ("episode", "env_steps", "score", "score_std", "score_min", "score_max", "trailing_avg",
           "seconds", "steps_per_s", "updates", "critic_loss", "actor_loss", "q", "noise_scale",
           "eval_score", "eval_std")


class MetricsError(ValueError):
    """A metrics file that cannot be read; the message names the file and the line."""


def score_columns(history: list[list[float]], window: int) -> dict[str, float]:
    """The columns that follow from the per-arm scores alone, for the last episode of `history`."""
    scores = np.asarray(history[-1], dtype=np.float64)
    return {"score": scores.mean(), "score_std": scores.std(), "score_min": scores.min(),
            "score_max": scores.max(),
            "trailing_avg": trailing_average([float(np.mean(s)) for s in history], window)}


def _sound_row(line: str, episodes: int, history: list[list[float]]) -> tuple[int, str] | None:
    """(episode, line) if the line is a whole row of numbers whose score agrees with the history."""
    if not line.endswith("\n"):
        return None
    fields = next(csv.reader([line]), [])
    if len(fields) != len(COLUMNS):
        return None
    try:
        episode = int(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return None
    if episode > episodes:
        return episode, line  # a row the resumed run will write again
    if episode < 1:
        return None
    score = values[COLUMNS.index("score") - 1]
    if not math.isclose(score, float(np.mean(history[episode - 1])), rel_tol=1e-9, abs_tol=1e-9):
        return None
    return episode, line


def repair_metrics(path: Path, history: list[list[float]], window: int) -> str | None:
    """Make the file hold one sound row for each episode of the checkpoint's score history, before
    training appends more. Rows of later episodes are dropped (the resumed run replays them); a
    missing or damaged row is rebuilt from the history, with what only the run knew (losses,
    timings) left as NaN, and a damaged header is rewritten. Whenever anything but later rows or a
    line cut by a kill is changed, the original is kept beside as metrics.csv.damaged-N.
    Returns a note for the user when that happened."""
    episodes = len(history)
    lines = path.read_text(errors="replace").splitlines(keepends=True) if path.exists() else []
    if not lines and not episodes:
        return None
    header_ok = bool(lines) and lines[0].rstrip("\r\n") == ",".join(COLUMNS)
    rows: dict[int, str] = {}
    damaged = bool(lines) and not header_ok
    for i, line in enumerate(lines[1:], start=1):
        sound = _sound_row(line, episodes, history)
        if sound is None:
            damaged |= i < len(lines) - 1 or line.endswith("\n")  # only a last, unfinished line is a kill's cut
        elif sound[0] <= episodes:
            damaged |= sound[0] in rows  # two rows for one episode
            rows.setdefault(*sound)
    rebuilt = [e for e in range(1, episodes + 1) if e not in rows]
    damaged |= bool(rebuilt) and bool(lines)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for episode in range(1, episodes + 1):
        if episode in rows:
            out.write(rows[episode])
        else:
            row = dict.fromkeys(COLUMNS, math.nan) | {"episode": episode}
            writer.writerow((row | score_columns(history[:episode], window))[k] for k in COLUMNS)
    note = None
    if damaged:
        k = 1
        while (backup := path.with_name(f"{path.name}.damaged-{k}")).exists():
            k += 1
        backup.write_bytes(path.read_bytes())
        note = (f"{path}: was damaged; {len(rebuilt)} row(s) rebuilt from the checkpoint's scores"
                f"{'' if header_ok else ', header rewritten'}; the original is kept as {backup.name}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(out.getvalue())
    os.replace(tmp, path)
    return note


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """Columns of a metrics file as arrays; MetricsError naming the file and line when it is damaged
    (a last line still being written is left out)."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        raise MetricsError(f"{path}: no metrics recorded yet") from None
    except UnicodeDecodeError:
        raise MetricsError(f"{path}: not a text file") from None
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    run = path.parent
    fix = f"`ddpg train --resume {run}` repairs it from the run's checkpoint"
    header = next(csv.reader(lines[:1]), [])
    if not header or set(header) - set(COLUMNS) or not {"episode", "score"} <= set(header):
        raise MetricsError(f"{path}: line 1: not a metrics header; {fix}")
    columns: list[list[float]] = [[] for _ in header]
    for number, row in enumerate(csv.reader(lines[1:]), start=2):
        if len(row) != len(header):
            raise MetricsError(f"{path}: line {number}: {len(row)} fields, expected {len(header)}; {fix}")
        for column, name, value in zip(columns, header, row):
            try:
                column.append(float(value))
            except ValueError:
                raise MetricsError(f"{path}: line {number}: {name} {value!r} is not a number; {fix}") from None
    if not columns[0]:
        raise MetricsError(f"{path}: no episodes recorded yet")
    return {name: np.array(column) for name, column in zip(header, columns)}


class Tracker:
    """Writes one row per episode to metrics.csv (flushed at once), and to the optional sinks."""

    def __init__(self, run_dir: Path, config: dict[str, Any], tensorboard: bool, wandb: bool,
                 start_episode: int):
        self.path = run_dir / METRICS_FILE
        self._file: io.TextIOWrapper | None = None
        self._writer = None
        self._tb = self._wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_episode + 1)
        if wandb:
            import wandb as wb  # checked to be installed before the run started
            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wb.init(project="ddpg", dir=str(run_dir), config=config,
                                  name=run_dir.name, resume="allow", id=run_dir.name)

    def log(self, row: dict[str, float]) -> None:
        if self._writer is None:
            new = not self.path.exists()
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, lineterminator="\n")
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
