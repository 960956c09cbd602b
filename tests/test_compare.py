"""`ddpg compare`: the statistics against values computed by hand, grouping and counting on real tiny
runs, the plot, and the command's one-line errors."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from ddpg.cli import main
from ddpg.compare import (Run, bootstrap_ci, curve_band, format_table, group_runs, iqm, load_runs, summarize,
                          write_summary_csv)
from ddpg.config import load_config
from ddpg.rundir import RunLock, write_outcome
from ddpg.trainer import Trainer
from runs import PENDULUM


# -- statistics ------------------------------------------------------------------------------------
def test_iqm_cuts_a_quarter_from_each_end():
    assert iqm([5.0]) == 5.0
    assert iqm([5.0, 0.0, 1.0]) == 2.0  # n < 4: nothing cut
    assert iqm([4.0, 1.0, 3.0, 2.0]) == 2.5  # mean of 2, 3
    assert iqm([0.0, 1.0, 2.0, 3.0, 100.0]) == 2.0  # floor(5/4) = 1 cut: mean of 1, 2, 3
    assert iqm([0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 20.0]) == 3.2  # floor(7/4) = 1 cut: mean of 1, 2, 3, 4, 6
    assert iqm([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0]) == 4.5  # 2 cut: mean of 3, 4, 5, 6
    assert iqm([100.0, 120.0, 140.0, math.inf]) == 130.0  # an unsolved run at the end is cut
    np.testing.assert_array_equal(iqm(np.array([[4.0, 1.0, 3.0, 2.0], [0.0, 0.0, 9.0, 1.0]]), axis=-1), [2.5, 0.5])


def test_bootstrap_ci_of_the_mean_is_the_exact_percentile_interval():
    # Means of 2 draws from [0, 1]: 0, 0.5, 1 with chances 1/4, 1/2, 1/4.
    assert bootstrap_ci([[0.0, 1.0]]) == (0.0, 1.0)
    # Sums of 4 draws from [0, 1, 2, 3]: 0 in 1, 1 in 4, 2 in 10 of 256 cases, so P(mean <= 0.25) =
    # 5/256 = 0.0195 < 0.025 <= P(mean <= 0.5) = 15/256; by symmetry the top end is 2.5.
    assert bootstrap_ci([[0.0, 1.0, 2.0, 3.0]], reps=100_000) == (0.5, 2.5)
    # The same values with an unsolved run (inf) in place of the largest: the top end is infinite.
    assert bootstrap_ci([[100.0, 120.0, 140.0, math.inf]], reps=100_000) == (110.0, math.inf)


def test_bootstrap_ci_of_the_iqm_matches_the_enumerated_distribution():
    data = [0.0, 1.0, 2.0, 3.0, 10.0]
    stats = np.sort([iqm(s) for s in itertools.product(data, repeat=len(data))])  # all 5^5 resamples
    share = np.arange(1, len(stats) + 1) / len(stats)
    exact = (stats[np.argmax(share >= 0.025)], stats[np.argmax(share >= 0.975)])
    assert exact == pytest.approx((1 / 3, 23 / 3))
    assert bootstrap_ci([data], iqm, reps=100_000) == pytest.approx(exact)


def test_bootstrap_resamples_within_each_stratum():
    assert bootstrap_ci([[2.0, 2.0, 2.0]]) == (2.0, 2.0)
    # Pooled, [0, 0, 0, 10, 10] would resample to means from 0 to 10; within strata it is always 4.
    assert bootstrap_ci([[0.0, 0.0, 0.0], [10.0, 10.0]]) == pytest.approx((4.0, 4.0))
    # Only the first stratum varies: its sum of 2 draws from [0, 1] is 0, 1, 2 with chances 1/4, 1/2,
    # 1/4, so the mean over all six, (sum + 20) / 6, runs from 20/6 to 22/6.
    assert bootstrap_ci([[0.0, 1.0], [5.0, 5.0, 5.0, 5.0]]) == pytest.approx((20 / 6, 22 / 6))


def test_bootstrap_ci_is_reproducible():
    x = np.random.default_rng(3).normal(size=10)
    assert bootstrap_ci([x], iqm) == bootstrap_ci([x], iqm)


def test_a_95_percent_ci_covers_the_true_mean_about_95_percent_of_the_time():
    # The percentile bootstrap of the mean of n normal values covers with chance about
    # P(|t_{n-1}| < 1.96 sqrt((n-1)/n)) = 0.942 at n = 50 (a t integral, done numerically), a little
    # short of 95% as is known. The count of covers in T trials is binomial: a correct interval lands
    # within 3.29 standard deviations of 0.942 in all but 0.1% of seeds.
    n, trials, expected = 50, 4000, 0.942
    rng = np.random.default_rng(7)
    covered = 0
    for k in range(trials):
        low, high = bootstrap_ci([rng.normal(0.0, 1.0, n)], reps=1000, seed=k)
        covered += low <= 0.0 <= high
    assert abs(covered / trials - expected) <= 3.29 * math.sqrt(expected * (1 - expected) / trials)


def test_curve_band_is_over_the_runs_that_reached_each_episode():
    center, low, high = curve_band([np.array([0.0, 2.0, 4.0]), np.array([1.0, 3.0])])
    np.testing.assert_allclose(center, [0.5, 2.5, 4.0])
    np.testing.assert_allclose(low, [0.0, 2.0, 4.0])  # two runs: the bootstrap CI is their range
    np.testing.assert_allclose(high, [1.0, 3.0, 4.0])  # one run left: no spread
    center, _, _ = curve_band([np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([9.0])], iqm)
    assert center[0] == 1.5


# -- groups and the table, on runs made by hand -------------------------------------------------------
def fake_run(*overrides: str, status: str | None = "finished", solved_at: int | None = None,
             trailing: float = 0.0, wall: float | None = 1.0, running: bool = False) -> Run:
    outcome = None if status is None else {"status": status, "solved_at": solved_at} | (
        {} if wall is None else {"wall_seconds": wall})
    metrics = {"score": np.array([trailing]), "trailing_avg": np.array([trailing]), "seconds": np.array([1.0, 2.0, np.nan])}
    return Run(Path("x"), load_config(None, [*PENDULUM, *overrides]), outcome, running, metrics)


def test_groups_are_named_by_the_keys_that_differ_and_ignore_seed_and_bookkeeping():
    runs = [fake_run("agent.tau=0.005", "noise.sigma=0.1", "train.seed=1"),
            fake_run("agent.tau=0.01", "noise.sigma=0.1", "train.seed=1"),
            fake_run("agent.tau=0.005", "noise.sigma=0.1", "train.seed=2", "train.checkpoint_every=7",
                     "train.tensorboard=true", "train.keep_checkpoints=1", "train.save_buffer=false"),
            fake_run("agent.tau=0.005", "noise.sigma=0.3", "train.seed=1")]
    groups = group_runs(runs)
    assert [(g.name, len(g.runs)) for g in groups] == [
        ("agent.tau=0.005, noise.sigma=0.1", 2), ("agent.tau=0.01, noise.sigma=0.1", 1),
        ("agent.tau=0.005, noise.sigma=0.3", 1)]
    assert groups[0].runs == [runs[0], runs[2]]
    assert [g.name for g in group_runs(runs[:1] + runs[2:3])] == ["Pendulum-v1"]
    kinds = group_runs([fake_run("noise.kind=gaussian", "train.target_score=30"), fake_run()])
    assert [g.name for g in kinds] == ["noise.kind=gaussian, train.target_score=30.0",
                                       "noise.kind=ou, train.target_score=none"]


def test_summary_by_hand():
    a = ["agent.tau=0.1"]
    runs = [fake_run(*a, status="solved", solved_at=100, trailing=1.0, wall=5.0),
            fake_run(*a, status="solved", solved_at=120, trailing=2.0, wall=6.0),
            fake_run(*a, status="solved", solved_at=140, trailing=3.0, wall=7.0),
            fake_run(*a, status="finished", trailing=4.0, wall=None),  # wall time: 1 + 2 s of episodes
            fake_run(*a, status="failed", trailing=-99.0), fake_run(*a, status=None, trailing=-99.0),  # killed
            fake_run(*a, status="early_stopped", trailing=-99.0), fake_run(*a, status="stopped", trailing=-99.0),
            fake_run(*a, status=None, running=True, trailing=-99.0),
            fake_run("agent.tau=0.2", status="solved", solved_at=200), fake_run("agent.tau=0.2", status="solved", solved_at=200),
            fake_run("agent.tau=0.3"), fake_run("agent.tau=0.3"),
            fake_run("agent.tau=0.4", status="failed")]
    rows = summarize(group_runs(runs), "episodes_to_target")
    assert [r["group"] for r in rows] == ["agent.tau=0.1", "agent.tau=0.2", "agent.tau=0.3", "agent.tau=0.4"]
    first = rows[0]
    assert {k: first[k] for k in ("rank", "runs", "failed", "stopped_early", "running", "n", "unsolved", "mode")} == {
        "rank": 1, "runs": 9, "failed": 2, "stopped_early": 2, "running": 1, "n": 4, "unsolved": 1, "mode": "min"}
    # Solve episodes 100, 120, 140 and never: median 130, IQM (of 120, 140) 130, mean infinite; the
    # mean's CI is that of the mean of [0, 1, 2, 3] scaled by 20 and shifted by 100 (inf for 3).
    assert (first["solved_at_median"], first["solved_at_min"], first["solved_at_max"]) == (130, 100, 140)
    assert (first["iqm"], first["mean"]) == (130, math.inf)
    assert first["final_trailing_avg"] == 2.5 and first["wall_seconds"] == 5.5  # median of 3, 5, 6, 7
    assert (rows[1]["iqm"], rows[1]["iqm_low"], rows[1]["iqm_high"]) == (200, 200, 200)
    assert rows[2]["iqm"] == math.inf and rows[3]["n"] == 0 and math.isnan(rows[3]["iqm"])
    table = format_table(rows)
    assert "130 (100-140), 1 unsolved" in table and "-, 2 unsolved" in table
    assert "inf [" in table and "1 run(s) still running" in table
    assert table.splitlines()[0].startswith("episodes to the target (unsolved: infinite), lower is better")
    assert [r["group"] for r in summarize(group_runs(runs), "episodes_to_target", "max")][:3] == [
        "agent.tau=0.3", "agent.tau=0.2", "agent.tau=0.1"]


# -- real runs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A folder shaped like a sweep's: two groups (agent.tau) of 3-episode Pendulum runs, with seeds
    1 and 2; in the first group also a failed, a killed, an early-stopped and a running run."""
    root = tmp_path_factory.mktemp("sweep")
    for tau in ("0.005", "0.05"):
        for seed in (1, 2):
            run = root / "trials" / f"tau{tau}-seed{seed}"
            config = load_config(None, [*PENDULUM, f"agent.tau={tau}", f"train.seed={seed}", "train.episodes=3"])
            Trainer(config, run).train(progress=False)
    first = root / "trials" / "tau0.005-seed1"
    for name in ("failed", "killed", "early", "running"):
        shutil.copytree(first, root / "trials" / f"tau0.005-{name}")
    write_outcome(root / "trials" / "tau0.005-failed", {"status": "failed", "reason": "TrainingError: nan"})
    (root / "trials" / "tau0.005-killed" / "outcome.json").unlink()
    write_outcome(root / "trials" / "tau0.005-early", {"status": "early_stopped"})
    (root / "trials" / "tau0.005-running" / "outcome.json").unlink()
    return root


def final(run: Path, column: str) -> float:
    with open(run / "metrics.csv") as f:
        return float(list(csv.DictReader(f))[-1][column])


def test_real_runs_are_found_grouped_counted_and_summarized(sweep):
    lock = RunLock(sweep / "trials" / "tau0.005-running")
    try:
        groups = group_runs(load_runs([sweep]))
        rows = summarize(groups, "trailing_avg", "min")
    finally:
        lock.release()
    assert [(g.name, len(g.runs)) for g in groups] == [("agent.tau=0.005", 6), ("agent.tau=0.05", 2)]
    assert {r.path.name: r.status for r in groups[0].runs} == {
        "tau0.005-early": "early_stopped", "tau0.005-failed": "failed", "tau0.005-killed": "failed",
        "tau0.005-running": "running", "tau0.005-seed1": "finished", "tau0.005-seed2": "finished"}
    for g in groups:
        a, b = (final(r.path, "trailing_avg") for r in g.ended)
        row = next(r for r in rows if r["group"] == g.name)
        # Two values: mean and IQM are their mean, and the bootstrap CI is their range.
        assert row["mean"] == pytest.approx((a + b) / 2) and row["iqm"] == pytest.approx((a + b) / 2)
        assert (row["mean_low"], row["mean_high"]) == pytest.approx((min(a, b), max(a, b)))
        assert row["wall_seconds"] == pytest.approx(np.median([json.loads((r.path / "outcome.json").read_text())
                                                               ["wall_seconds"] for r in g.ended]))
    assert rows[0]["mean"] < rows[1]["mean"]  # min: lowest first
    assert {r["group"]: (r["runs"], r["n"], r["failed"], r["stopped_early"], r["running"]) for r in rows} == {
        "agent.tau=0.005": (6, 2, 2, 1, 1), "agent.tau=0.05": (2, 2, 0, 0, 0)}
    same = load_runs([sweep / "trials" / "tau0.05-seed1", sweep / "trials", sweep / "trials" / "tau0.05-seed1"])
    assert [r.path.name for r in same][:2] == ["tau0.05-seed1", "tau0.005-early"] and len(same) == 8  # each once


def test_a_damaged_config_json_falls_back_to_the_checkpoint(sweep, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sweep / "trials" / "tau0.05-seed2", run)
    (run / "config.json").write_text("{")
    assert load_runs([run])[0].config == load_runs([sweep / "trials" / "tau0.05-seed2"])[0].config


def test_cli_prints_the_table_and_writes_the_plot_and_csv(sweep, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(sweep), "--csv", "summary.csv"]) == 0
    out = capsys.readouterr().out
    assert "agent.tau=0.005" in out and "final trailing average, higher is better" in out
    image = matplotlib.image.imread(sweep / "compare.png")  # a single sweep folder: the plot goes in it
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    with open("summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["group"] for r in rows] == [line.split()[1] for line in out.splitlines()[2:4]]
    assert [(r["runs"], r["failed"], r["stopped_early"], r["n"]) for r in rows if r["group"] == "agent.tau=0.005"] == [
        ("6", "3", "1", "2")]  # the running copy is not locked here: counted as killed
    runs = [str(p) for p in sorted((sweep / "trials").glob("tau0.05-*"))]
    assert main(["compare", *runs, "--metric", "score", "--out", "curves.png", "--csv", "x.csv"]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert main(["compare", runs[0]]) == 0 and (tmp_path / "compare.png").exists()  # a run: here
    assert "Pendulum-v1" in capsys.readouterr().out


def test_written_csv_reads_back(tmp_path):
    rows = summarize(group_runs([fake_run(trailing=1.5), fake_run(trailing=2.5)]))
    write_summary_csv(rows, tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as f:
        back = list(csv.DictReader(f))
    assert float(back[0]["mean"]) == 2.0 and back[0]["solved_at_median"] == "inf"


def one_line_error(capsys, *args) -> str:
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_bad_input_is_one_line(sweep, tmp_path, capsys):
    assert "no such folder" in one_line_error(capsys, str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    assert "no ddpg run directory in it or below it" in one_line_error(capsys, str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("[1]")
    assert "bad/config.json: not a saved ddpg config" in one_line_error(capsys, str(tmp_path / "bad"))
    run = tmp_path / "run"
    shutil.copytree(sweep / "trials" / "tau0.05-seed1", run)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:2]) + "3,oops\n")
    assert "metrics.csv: line 3: 2 fields" in one_line_error(capsys, str(tmp_path))
    with pytest.raises(SystemExit):
        main(["compare", str(run), "--metric", "speed"])
    assert "invalid choice: 'speed'" in capsys.readouterr().err


def test_compare_imports_neither_torch_nor_ray():
    code = "import sys, ddpg.compare; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- rankings that must never be silently wrong ------------------------------------------------------------
def nan_final(trials: Path) -> None:
    """The last trailing average of both tau=0.05 runs is NaN."""
    for run in trials.glob("tau0.05-seed*"):
        lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
        header = lines[0].strip().split(",")
        cells = lines[-1].strip().split(",")
        cells[header.index("trailing_avg")] = "nan"
        (run / "metrics.csv").write_text("".join(lines[:-1]) + ",".join(cells) + "\n")


def cut_metrics(trials: Path) -> None:
    """An interrupted copy: tau0.05-seed1's metrics.csv stops after episode 2 of the 3 it ran."""
    path = trials / "tau0.05-seed1" / "metrics.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))


def another_task(trials: Path) -> None:
    """A Reacher run beside the Pendulum ones."""
    Trainer(load_config(None, ["env.num_envs=2", "agent.actor_hidden=[16, 16]", "agent.critic_hidden=[16, 16]",
                               "agent.batch_size=32", "agent.buffer_size=4000", "agent.learn_every=100",
                               "agent.updates_per_learn=1", "train.episodes=1", "train.tensorboard=false"]),
            trials / "reacher").train(progress=False)


RANKING_CASES = [
    ("a NaN final value ranks last, never first", nan_final,
     {"agent.tau=0.005": 1, "agent.tau=0.05": 2}, [r"tau0.05-seed[12]: its trailing_avg is not a number"]),
    ("a cut metrics.csv is named and left out", cut_metrics,
     {"agent.tau=0.005": None, "agent.tau=0.05": None},
     [r"tau0.05-seed1/metrics.csv ends at episode 2 but outcome.json says the run ended at episode 3: left out"]),
    ("runs of different tasks are ranked within each", another_task,
     {"ddpg/Reacher-v0": 1},
     [r"ranked within each environment \((Pendulum-v1, ddpg/Reacher-v0|ddpg/Reacher-v0, Pendulum-v1)\)"]),
]


@pytest.mark.parametrize("name, edit, ranks, lines", RANKING_CASES, ids=[c[0] for c in RANKING_CASES])
def test_rankings_that_would_mislead_are_refused_or_explained(name, edit, ranks, lines, sweep, tmp_path, capsys):
    trials = tmp_path / "trials"
    for run in (sweep / "trials").glob("tau*-seed*"):
        shutil.copytree(run, trials / run.name)
    edit(trials)
    assert main(["compare", str(trials), "--csv", str(tmp_path / "s.csv"), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "s.csv") as f:
        rows = {r["group"]: r for r in csv.DictReader(f)}
    for group, rank in ranks.items():
        found = next(r for g, r in rows.items() if group in g)
        assert rank is None or int(found["rank"]) == rank, (group, found["rank"])
    for line in lines:
        assert re.search(line, out), out
    if edit is cut_metrics:
        assert rows["agent.tau=0.05"]["n"] == "1" and rows["agent.tau=0.05"]["damaged"] == "1"
    if edit is another_task:
        assert sorted(int(r["rank"]) for r in rows.values()) == [1, 1, 2]  # each task has its own first
