"""Plots of a run: its scores (mean over arms per episode, their spread, the trailing average, the
goal), the diagnostics of its learning, and the per-arm scores of an evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .tracking import METRICS_FILE, read_metrics  # noqa: E402


def plot_run(run_dir: Path, out: Path | None = None, target: float | None = None,
             window: int = 100, solved_at: int | None = None) -> Path:
    path = run_dir / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics to plot")
    m = read_metrics(path)
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.fill_between(m["episode"], m["score_min"], m["score_max"], alpha=0.2, label="range over arms")
    ax.plot(m["episode"], m["score"], lw=1, label="episode score (mean over arms)")
    ax.plot(m["episode"], m["trailing_avg"], lw=2, label=f"trailing {window}-episode average")
    evaluated = np.isfinite(m["eval_score"]) if "eval_score" in m else np.zeros(len(m["episode"]), bool)
    if evaluated.any():
        ax.errorbar(m["episode"][evaluated], m["eval_score"][evaluated], m["eval_std"][evaluated], fmt="o-", ms=3,
                    lw=1, capsize=2, label="evaluation (deterministic policy, +- std over episodes)")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"goal ({target:g})")
    if solved_at is not None:
        ax.axvline(solved_at, color="C2", lw=1.5, label=f"solved at episode {solved_at}")
    ax.set_xlabel("episode")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("score")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    out = out or run_dir / "scores.png"
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def q_ceiling(largest_reward: float, gamma: float) -> float:
    """The largest discounted return, r_max / (1 - gamma): the value a critic's Q can reach when every
    step earns the most (a time limit is not an end, so the critic bootstraps past it)."""
    return math.inf if gamma == 1 else largest_reward / (1 - gamma)


# Columns of metrics.csv shown by plot_diagnostics, with their titles.
DIAGNOSTICS = {"critic_loss": "critic loss (mean squared TD error)", "actor_loss": "actor loss (-Q of its actions)",
               "q": "mean Q of replayed (state, action) pairs", "noise_scale": "noise scale (multiplier of sigma)",
               "seconds": "seconds per episode"}


def plot_diagnostics(metrics: dict[str, np.ndarray], out: Path, ceiling: float | None = None) -> Path:
    """One panel per DIAGNOSTICS column (per episode: the mean over its updates), and on the Q panel
    the largest value Q can truly have; a Q above it is overestimation."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (column, title) in zip(axes.flat, DIAGNOSTICS.items()):
        values = metrics.get(column)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("episode")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if values is None or not np.isfinite(values).any():
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
            continue
        ax.plot(metrics["episode"], values, lw=1.2, color="C0")
        if column == "q" and ceiling is not None and math.isfinite(ceiling):
            ax.axhline(ceiling, color="C3", ls="--", lw=1, label=f"largest possible ({ceiling:g})")
            ax.legend(loc="lower right", fontsize=8)
    # The learning effort: updates per episode, from the running count (agent.effort lowers it).
    ax = axes.flat[-1]
    ax.set_title("updates per episode (learning effort)", fontsize=10)
    ax.set_xlabel("episode")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.plot(metrics["episode"], np.diff(metrics["updates"], prepend=0.0), lw=1.2, color="C0")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_evaluation(scores: np.ndarray, out: Path, target: float | None = None, unit: str = "environment") -> Path:
    """Per environment (`unit`: what one is, e.g. an arm), its score in each evaluation episode (dots)
    and their mean (bar)."""
    episodes, arms = scores.shape
    fig, ax = plt.subplots(figsize=(9, 3.5))
    index = np.arange(1, arms + 1)
    ax.bar(index, scores.mean(axis=0), color="C0", alpha=0.35, label=f"mean over {episodes} episode(s)")
    ax.plot(np.repeat(index, episodes), scores.T.ravel(), "o", color="C0", ms=3, label="one episode")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"goal ({target:g})")
    ax.set_xlabel(unit)
    ax.set_ylabel("score")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
