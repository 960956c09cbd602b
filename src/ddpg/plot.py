"""Score plot of a run: mean over arms per episode, its spread, the trailing average, the goal."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .tracking import METRICS_FILE, read_metrics  # noqa: E402


def plot_run(run_dir: Path, out: Path | None = None, target: float | None = None,
             window: int = 100) -> Path:
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
    ax.set_xlabel("episode")
    ax.set_ylabel("score")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    out = out or run_dir / "scores.png"
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
