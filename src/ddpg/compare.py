"""Comparing groups of runs. Runs whose configs differ only in the seed form a group; per group: how
its runs ended, when they solved, and a metric's mean and interquartile mean (IQM) over seeds with
95% stratified-bootstrap confidence intervals (Agarwal et al., 2021, "Deep Reinforcement Learning at
the Edge of the Statistical Precipice"), in plain NumPy; and the learning curves with their bands.

It reads run directories only (config.json, metrics.csv, outcome.json, .lock; a checkpoint's config
where a config.json is damaged), through rundir.py: no Ray.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .config import Config, flatten  # noqa: E402
from .rundir import (CHECKPOINTS, CONFIG_FILE, OUTCOME_FILE, RunDirError, in_use, is_run, read_outcome,  # noqa: E402
                     run_config)
from .tracking import METRICS_FILE, MetricsError, read_metrics  # noqa: E402

# How a run is recorded, not how it learns: runs that differ only in these and the seed are one group.
BOOKKEEPING = ("train.seed", "train.tensorboard", "train.wandb", "train.threads", "train.device", "train.checkpoint_every",
               "train.keep_checkpoints", "train.save_buffer")
METRICS = {"trailing_avg": "final trailing average", "score": "final episode score",
           "episodes_to_target": "episodes to the target (unsolved: infinite)"}
ENDED = ("solved", "finished")  # the runs the statistics are over: target reached or budget spent
STOPPED = ("stopped", "early_stopped")  # by a signal, or by a sweep's scheduler
CONFIDENCE = 0.95
REPS = 10_000  # bootstrap resamples for the table
SEED = 0  # of the bootstrap's generator: the same runs give the same table


# -- statistics --------------------------------------------------------------------------------------
def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the sorted values left after cutting floor(n/4) from each end
    (as scipy.stats.trim_mean(x, 0.25)); for n < 4, the mean."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    return np.take(x, np.arange(n // 4, n - n // 4), axis=axis).mean(axis=axis)


def bootstrap_ci(strata: list, statistic=np.mean, reps: int = REPS, confidence: float = CONFIDENCE,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile confidence interval of `statistic` (called as statistic(x, axis=-1)) over all strata
    together, by the stratified bootstrap: each resample draws from every stratum, with replacement,
    as many values as it holds. The ends are the (1 - c)/2 and (1 + c)/2 quantiles of the resampled
    statistic, as the smallest value whose share of resamples at or below it reaches the level (so an
    infinite value, an unsolved run, is never interpolated into a finite one)."""
    rng = np.random.default_rng(seed)
    resamples = np.concatenate([x[rng.integers(0, len(x), (reps, len(x)))]
                                for x in (np.asarray(s, dtype=np.float64) for s in strata)], axis=1)
    low, high = np.quantile(statistic(resamples, axis=-1), [(1 - confidence) / 2, (1 + confidence) / 2],
                            method="inverted_cdf")
    return float(low), float(high)


# -- runs ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    path: Path
    config: Config
    outcome: dict[str, Any] | None  # how its last session ended; None: running, or killed
    running: bool  # a process owns it now
    metrics: dict[str, np.ndarray] | None = None  # None: no episode recorded
    problem: str | None = None  # why its files disagree, so that it is left out

    @property
    def status(self) -> str:
        """running, solved, finished, stopped, early_stopped, failed (a failure, or a kill), or
        damaged (its files disagree)."""
        if self.running:
            return "running"
        if self.problem:
            return "damaged"
        status = (self.outcome or {}).get("status")
        return status if status in ENDED + STOPPED else "failed"

    def value(self, metric: str) -> float:
        """The run's figure of `metric`: its last row's column, or its solve episode (inf: unsolved)."""
        if metric == "episodes_to_target":
            solved = (self.outcome or {}).get("solved_at")
            return math.inf if solved is None else float(solved)
        return float(self.metrics[metric][-1])

    @property
    def wall_seconds(self) -> float:
        """Training time over all sessions (outcome.json), else the sum of the episodes' times."""
        seconds = (self.outcome or {}).get("wall_seconds")
        if isinstance(seconds, (int, float)):
            return float(seconds)
        return float(np.nansum(self.metrics["seconds"])) if self.metrics is not None else math.nan


def find_runs(folder: Path) -> list[Path]:
    """The folder, if it is a run directory, else every run directory below it."""
    found = []
    for root, dirs, _ in os.walk(folder):
        if is_run(Path(root)):
            found.append(Path(root))
            dirs.clear()  # what is inside a run is the run's
        else:
            dirs[:] = sorted(d for d in dirs if d not in (CHECKPOINTS, "tensorboard"))
    return found


def load_run(run_dir: Path) -> Run:
    running = in_use(run_dir)
    run = Run(run_dir, run_config(run_dir), None if running else read_outcome(run_dir), running)
    path = run_dir / METRICS_FILE
    if path.exists() or run.status in ENDED:  # a run that ended has episodes: their absence is damage
        run.metrics = read_metrics(path)
    ended_at = (run.outcome or {}).get("episode")
    if run.status in ENDED and isinstance(ended_at, int) and int(run.metrics["episode"][-1]) != ended_at:
        # A cut file (an interrupted copy) would pass an early episode's value off as the final one.
        run.problem = (f"{path} ends at episode {int(run.metrics['episode'][-1])} but {OUTCOME_FILE} says the run "
                       f"ended at episode {ended_at}: left out")
    return run


def load_runs(paths: list[Path]) -> list[Run]:
    """The runs in `paths`, each a run directory or a folder (a sweep's) with run directories below it."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.is_dir():
            raise RunDirError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}; "
                              "give run directories, or a folder (a sweep's) that holds them")
        runs = find_runs(path)
        if not runs:
            if (path / CONFIG_FILE).exists():
                run_config(path)  # raises, naming what is wrong with it
            raise RunDirError(f"{path}: no ddpg run directory in it or below it")
        found |= dict.fromkeys(p.resolve() for p in runs)
    return [load_run(p) for p in found]


# -- groups --------------------------------------------------------------------------------------------
@dataclass
class Group:
    name: str  # what sets it apart from the other groups, e.g. "agent.tau=0.005, noise.sigma=0.1"
    runs: list[Run]

    @property
    def ended(self) -> list[Run]:
        return [r for r in self.runs if r.status in ENDED]


def show(value: Any) -> str:
    """A value as an override would write it: agent.tau=0.005, noise.kind=ou, train.target_score=none."""
    return value if isinstance(value, str) else "none" if value is None else json.dumps(value)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs whose configs differ only in the seed and bookkeeping (BOOKKEEPING), in order of first
    appearance; each group named by the keys in which the groups differ (one group: its env id)."""
    settings = [{k: v for k, v in flatten(r.config.to_dict()).items() if k not in BOOKKEEPING} for r in runs]
    members: dict[str, list[int]] = {}
    for i, s in enumerate(settings):
        members.setdefault(json.dumps(s, sort_keys=True), []).append(i)
    firsts = [settings[m[0]] for m in members.values()]
    differ = [k for k in firsts[0] if len({json.dumps(f[k], sort_keys=True) for f in firsts}) > 1] if firsts else []
    return [Group(", ".join(f"{k}={show(settings[m[0]][k])}" for k in differ) or runs[m[0]].config.env.id,
                  [runs[i] for i in m]) for m in members.values()]


# -- the table -----------------------------------------------------------------------------------------
def summarize(groups: list[Group], metric: str = "trailing_avg", mode: str | None = None,
              reps: int = REPS) -> list[dict[str, Any]]:
    """One row per group, ranked within its environment (groups of different tasks are not
    comparable), best first by the metric's IQM (then mean) in `mode` (max, or min; default: min for
    episodes_to_target, else max); groups with no run that ended, or whose figure is not a number,
    come last. The statistics are over the runs that ended (solved, or budget spent) and whose files
    agree; the others are named in `left_out`."""
    if metric not in METRICS:
        raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
    if mode not in (None, "max", "min"):
        raise ValueError(f"mode: must be max or min, got {mode!r}")
    mode = mode or ("min" if metric == "episodes_to_target" else "max")
    rows = []
    for g in groups:
        statuses = [r.status for r in g.runs]
        ended = g.ended
        values = np.array([r.value(metric) for r in ended])
        solved = np.array([r.value("episodes_to_target") for r in ended])
        stats = dict.fromkeys(("mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high"), math.nan)
        if ended:
            # One stratum: the runs of a group share their task (env.id is part of the group's key).
            for name, statistic in (("mean", np.mean), ("iqm", iqm)):
                stats[name] = float(statistic(values, axis=-1))
                stats[f"{name}_low"], stats[f"{name}_high"] = bootstrap_ci([values], statistic, reps)
        finite = solved[np.isfinite(solved)]
        rows.append({
            "group": g.name, "runs": len(g.runs), "failed": statuses.count("failed"),
            "stopped_early": sum(s in STOPPED for s in statuses), "running": statuses.count("running"),
            "damaged": statuses.count("damaged"), "n": len(ended), "unsolved": len(solved) - len(finite),
            "solved_at_median": float(np.median(solved)) if ended else math.nan,
            "solved_at_min": float(finite.min()) if len(finite) else math.nan,
            "solved_at_max": float(finite.max()) if len(finite) else math.nan,
            "final_trailing_avg": float(np.mean([r.value("trailing_avg") for r in ended])) if ended else math.nan,
            "metric": metric, "mode": mode, **stats,
            "wall_seconds": float(np.median([r.wall_seconds for r in ended])) if ended else math.nan,
            "env": g.runs[0].config.env.id,
            "left_out": "; ".join([r.problem for r in g.runs if r.problem]
                                  + [f"{r.path}: its {metric} is not a number" for r in ended
                                     if math.isnan(r.value(metric))])})
    sign = -1 if mode == "max" else 1
    envs = list(dict.fromkeys(r["env"] for r in rows))
    # NaN compares false both ways, so it would sort anywhere (even first): such groups go last.
    rows.sort(key=lambda r: (envs.index(r["env"]), r["n"] == 0, math.isnan(r["iqm"]) or math.isnan(r["mean"]),
                             sign * np.nan_to_num(r["iqm"]), sign * np.nan_to_num(r["mean"])))
    ranks = {env: 0 for env in envs}
    for row in rows:
        ranks[row["env"]] += 1
        row["rank"] = ranks[row["env"]]
    return [{"rank": row.pop("rank"), **row} for row in rows]


def best_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per environment, the group that ranks first, if its figure is a number over runs that ended."""
    return [r for r in rows if r["rank"] == 1 and r["n"] and not (math.isnan(r["iqm"]) or math.isnan(r["mean"]))]


def write_summary_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _number(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def _solved_at(row: dict[str, Any]) -> str:
    if not row["n"]:
        return "-"
    median = row["solved_at_median"]
    text = "-" if math.isinf(median) else f"{median:g}"
    if row["unsolved"] < row["n"]:
        text += f" ({row['solved_at_min']:g}-{row['solved_at_max']:g})"
    return text + (f", {row['unsolved']} unsolved" if row["unsolved"] else "")


def table(rows: list[dict[str, Any]]) -> tuple[str, list[tuple[str, ...]], list[str]]:
    """The ranked table as text: a line saying what its figures are over, the header and one row of
    cells per group, and notes."""
    metric, mode = rows[0]["metric"], rows[0]["mode"]
    header = ("rank", "group", "runs", "failed", "stopped early", "running", "solved at: median (range)",
              "final trailing avg", f"mean [{CONFIDENCE:.0%} CI]", f"IQM [{CONFIDENCE:.0%} CI]", "wall time")
    cells = [header] + [(
        str(r["rank"]), r["group"], str(r["runs"]), str(r["failed"]), str(r["stopped_early"]), str(r["running"]),
        _solved_at(r), _number(r["final_trailing_avg"]),
        "-" if not r["n"] else f"{_number(r['mean'])} [{_number(r['mean_low'])}, {_number(r['mean_high'])}]",
        "-" if not r["n"] else f"{_number(r['iqm'])} [{_number(r['iqm_low'])}, {_number(r['iqm_high'])}]",
        "-" if math.isnan(r["wall_seconds"]) else f"{r['wall_seconds']:.1f} s") for r in rows]
    envs = list(dict.fromkeys(r["env"] for r in rows))
    within = f"; ranked within each environment ({', '.join(envs)}): runs of different tasks are not comparable" \
        if len(envs) > 1 else ""
    caption = (f"{METRICS[metric]}, {'higher' if mode == 'max' else 'lower'} is better; ranked by IQM{within}. "
               f"Statistics over the runs that ended (solved or budget spent), {CONFIDENCE:.0%} CIs by "
               "stratified bootstrap over seeds.")
    running = sum(r["running"] for r in rows)
    notes = [f"{running} run(s) still running: counted under 'running', left out of the statistics."] if running else []
    notes += [note for r in rows if r["left_out"] for note in r["left_out"].split("; ")]
    return caption, cells, notes


def format_table(rows: list[dict[str, Any]]) -> str:
    """The ranked table, with a line saying what its figures are over."""
    caption, cells, notes = table(rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([caption, *lines, *notes])


# -- the plot ------------------------------------------------------------------------------------------
def curve_band(curves: list[np.ndarray], statistic=np.mean, reps: int = 1_000) -> tuple[np.ndarray, ...]:
    """Per episode, `statistic` over the curves that reach it, and the bootstrap CI of it."""
    length = max(map(len, curves))
    center, low, high = np.empty(length), np.empty(length), np.empty(length)
    for e in range(length):
        values = np.array([c[e] for c in curves if len(c) > e])
        center[e] = statistic(values, axis=-1)
        low[e], high[e] = bootstrap_ci([values], statistic, reps)
    return center, low, high


def plot_comparison(groups: list[Group], path: Path, statistic: str = "mean", reps: int = 1_000) -> Path:
    """Per group, the mean (or IQM) over runs of each episode's score and of the trailing average,
    with a shaded CI band and a thin line per run; the target where all runs share one."""
    function = {"mean": np.mean, "iqm": iqm}[statistic]
    runs = [r for g in groups for r in g.runs]
    if not any(r.metrics is not None for r in runs):
        raise MetricsError("no run has recorded an episode yet; nothing to plot")
    windows = {r.config.train.window for r in runs}
    targets = {r.config.train.target_score for r in runs}
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    panels = (("score", "episode score (mean over arms)"),
              ("trailing_avg", f"trailing {windows.pop()}-episode average" if len(windows) == 1
               else "trailing average (each run's train.window)"))
    for ax, (column, title) in zip(axes, panels):
        for i, g in enumerate(groups):
            curves = [r.metrics[column] for r in g.runs if r.metrics is not None]
            if not curves:
                continue
            color = f"C{i % 10}"
            for curve in curves:
                ax.plot(np.arange(1, len(curve) + 1), curve, color=color, lw=0.6, alpha=0.4)
            center, low, high = curve_band(curves, function, reps)
            episodes = np.arange(1, len(center) + 1)
            ax.fill_between(episodes, low, high, color=color, alpha=0.2, lw=0)
            ax.plot(episodes, center, color=color, lw=2, label=f"{g.name} (n={len(curves)})")
        if len(targets) == 1 and None not in targets:
            target = next(iter(targets))
            ax.axhline(target, color="k", ls="--", lw=1, label=f"target ({target:g})")
        ax.set_title(title)
        ax.set_xlabel("episode")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[1].legend(title=f"{'mean' if statistic == 'mean' else 'IQM'} over the runs that reached the episode;\n"
                   f"shaded: its {CONFIDENCE:.0%} bootstrap CI; thin lines: each run", fontsize=8, title_fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
