"""Sweeps: bad sweep files are refused before Ray starts; real Ray (small) runs them end to end,
survives a SIGKILL of the whole sweep, and runs on a cluster whose worker dies mid-trial.

Every test that starts Ray runs it in network and PID namespaces of its own (tests/runs.py: isolated):
Ray binds only loopback, and the kernel ends every process it started when the test's command ends.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ddpg.cli import main
from ddpg.config import load_config
from ddpg.rundir import in_use, read_outcome
from runs import isolated, namespaces_available

ROOT = Path(__file__).resolve().parent.parent
DDPG = [sys.executable, "-m", "ddpg.cli"]
ray_test = pytest.mark.skipif(not namespaces_available(), reason="needs network and PID namespaces (root, unshare, "
                              "ip, and the right to create them) to isolate Ray")


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The command's output; on a timeout the command and everything in its namespaces end too."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()  # unshare --kill-child: the kernel ends everything inside
            proc.wait()

GOOD = '''
base = "configs/pendulum.toml"
[overrides]
"train.target_score" = "none"
[space]
"agent.tau" = { grid = [0.005, 0.02] }
[sweep]
seeds = [0, 1]
'''


@pytest.mark.parametrize("text, message", [
    (GOOD + "bogus = 1\n", "sweep.bogus: unknown key"),
    (GOOD.replace("[overrides]", "spaces = 1\n[overrides]"), "unknown key 'spaces'"),
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }', '"agent.tau" = { grid = ["fast"] }'),
     r"\[space\] agent.tau: expected float, got 'fast'"),
    (GOOD.replace('"agent.tau"', '"agent.tauu"'), r"\[space\] agent.tauu: unknown key"),
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }', '"agent.tau" = { grid = [0.005, 5.0] }'),
     r"\[space\] agent.tau: must be in \(0, 1\], got 5.0"),
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }', ""), r"\[space\] is empty"),
    (GOOD.replace("seeds = [0, 1]", ""), "sweep.seeds: missing"),
    (GOOD.replace("[sweep]\nseeds = [0, 1]", ""), r"\[sweep\] is missing"),
    (GOOD.replace("seeds = [0, 1]", "seeds = [0, 0]"), "sweep.seeds: must be distinct"),
    (GOOD + 'search = "optuna"\n', "sweep.search: optuna cannot search grid keys"),
    (GOOD + 'metric = "episodes_to_target"\n', 'sweep.mode: episodes_to_target is better low'),
    (GOOD + 'metric = "episodes_to_target"\nmode = "min"\nscheduler = "asha"\n', "sweep.scheduler: asha compares"),
    (GOOD + "gpus_per_trial = -1\n", "sweep.gpus_per_trial: must be >= 0"),
    (GOOD + "gpus_per_trial = 1.5\n", "sweep.gpus_per_trial: above 1 it must be a whole number of GPUs"),
    (GOOD + "samples = 0\n", "sweep.samples: must be at least 1"),
    (GOOD.replace('{ grid = [0.005, 0.02] }', '{ loguniform = [0, 0.1] }'), "loguniform needs low > 0"),
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }', '"agent.batch_size" = { randint = [1.5, 9] }'),
     r"randint needs \[low, high\] with low < high \(whole numbers\)"),
    (GOOD.replace('{ grid = [0.005, 0.02] }', '{ normal = [0, 1] }'), "expected one of grid"),
    (GOOD.replace('"agent.tau"', '"train.seed"'), "seeds go in \\[sweep\\] seeds"),
    (GOOD.replace("configs/pendulum.toml", "configs/nope.toml"), "base: no config file 'configs/nope.toml'"),
    (GOOD.replace('"train.target_score" = "none"', '"agent.gamma" = 2'), r"\[overrides\] agent.gamma: must be in \[0, 1\]"),
    ("base = [", "not a readable TOML file"),
    (GOOD.replace('{ grid = [0.005, 0.02] }', '{ choice = [0.005, 0.02] }') + 'search = "optuna"\nscheduler = "asha"\n'
     "episodes = 20\n", "sweep.scheduler: asha would stop some seeds of an Optuna configuration"),
    (GOOD + "samples = 3\n", "sweep.samples: 3 would run every grid point 3 times alike"),
    # settings that only fail together, environments that do not exist, and the machine's limits:
    # all found before the sweep's folder exists (issue 20)
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }',
                  '"agent.batch_size" = { grid = [64, 3000] }\n"agent.buffer_size" = { grid = [1000, 200000] }'),
     r"\[space\] the combination agent.batch_size=3000, agent.buffer_size=1000: agent.buffer_size: 1000 is smaller "
     "than agent.batch_size 3000"),
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }', '"env.id" = { grid = ["Pendulum-v1", "Nope-v0"] }'),
     r"bad.toml: env.id: .*Nope"),
    (GOOD.replace('"train.target_score" = "none"', '"env.id" = "Nope-v0"'), r"bad.toml: env.id: .*Nope"),
    (GOOD.replace('"agent.tau" = { grid = [0.005, 0.02] }',
                  f'"agent.tau" = {{ grid = {[round(0.001 + i * 1e-6, 6) for i in range(1001)]} }}\n'
                  f'"agent.gamma" = {{ grid = {[round(0.5 + i * 1e-4, 4) for i in range(1000)]} }}'),
     r"2,002,000 grid points with the seeds, more than Ray Tune can resume \(1,000,000\)"),
    (GOOD + "cpus_per_trial = 64\n", r"bad.toml: sweep.cpus_per_trial: 64, more than this machine's \d+ CPUs"),
])
def test_bad_sweep_files_are_one_line_before_ray_starts(text, message, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(ROOT)  # the base config is found from the working directory
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not out.exists()  # nothing started


def test_a_file_without_end_is_refused_not_read(tmp_path, capfd):
    assert main(["sweep", "/dev/zero", "--out", str(tmp_path / "out")]) == 2
    err = capfd.readouterr().err.strip()
    assert err == "ddpg sweep: error: /dev/zero: larger than 1024 KiB; a config file is a few KB of TOML"
    assert not (tmp_path / "out").exists()


def test_a_cluster_sweep_needs_shared_storage(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(ROOT)
    for extra, message in (([], "--storage: a sweep on a cluster needs a folder every node can reach"),
                           (["--storage", "s3://bucket/sweeps"], "--storage: s3://bucket/sweeps is a URL")):
        assert main(["sweep", "sweeps/pendulum.toml", "--address", "127.0.0.1:6379", *extra]) == 2
        assert message in capfd.readouterr().err


# -- real Ray ----------------------------------------------------------------------------------------
@pytest.fixture
def ray_tmp():
    path = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sweep_folder(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1
    return folders[0]


def trials(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((folder / "trials").iterdir())}


@ray_test
def test_the_issues_pendulum_sweep_runs_as_written(tmp_path, ray_tmp):
    out = tmp_path / "out"
    proc = isolated([*DDPG, "sweep", "sweeps/pendulum.toml", "--out", str(out)], tmp_path / "home", ray_tmp,
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = finish(proc, 900)
    assert proc.returncode == 0, output
    folder = sweep_folder(out)
    names = sorted(trials(folder))
    assert names == ["00000-agent.tau=0.005-seed0", "00001-agent.tau=0.02-seed0",
                     "00002-agent.tau=0.005-seed1", "00003-agent.tau=0.02-seed1"]
    for run in trials(folder).values():
        assert read_outcome(run)["status"] == "finished" and read_outcome(run)["episode"] == 3
        config = json.loads((run / "config.json").read_text())
        assert config["agent"]["warmup_steps"] == 200 and config["train"]["target_score"] is None
    with open(folder / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["group"] for r in rows} == {"agent.tau=0.005", "agent.tau=0.02"}
    assert (folder / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = load_config(folder / "best.toml")  # a config `ddpg train --config` accepts
    # the sweep's 3-episode budget was the sweep's; the best setting trains with the base's budget
    assert best.agent.tau in (0.005, 0.02) and best.train.episodes == load_config("configs/pendulum.toml").train.episodes
    assert "4 trial(s), up to 2 at a time" in output


# A Pendulum small enough that a trial's episode takes a fraction of a second.
SMALL = '''
base = "configs/pendulum.toml"
[overrides]
"agent.actor_hidden" = [32, 32]
"agent.critic_hidden" = [32, 32]
"agent.warmup_steps" = 200
"train.target_score" = "none"
'''

KILLABLE = SMALL + '''"train.checkpoint_every" = 1
[space]
"agent.tau" = { grid = [0.005, 0.02] }
[sweep]
seeds = [0, 1]
episodes = 12
max_concurrent = 2
'''


def episodes_saved(run: Path) -> list[int]:
    """The episodes of a trial's periodic checkpoints on disk (episode_000007.pt: 7)."""
    return [int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("episode_*.pt")]


@ray_test
def test_a_sweep_killed_mid_way_resumes_without_rerunning_finished_trials(tmp_path, ray_tmp):
    sweep_file = tmp_path / "killable.toml"
    sweep_file.write_text(KILLABLE)
    out = tmp_path / "out"
    proc = isolated([*DDPG, "sweep", str(sweep_file), "--out", str(out)], tmp_path / "home", ray_tmp, cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        # Until one trial has finished and another has checkpoints but is far from its end: the first two
        # trials run side by side at one pace, so when one finishes the other may be writing its last
        # checkpoint before the kill lands; then a later trial is the one caught mid-way.
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            runs = trials(sweep_folder(out)).values() if out.exists() and any(out.iterdir()) and \
                (sweep_folder(out) / "trials").exists() else []
            finished = [r for r in runs if (read_outcome(r) or {}).get("status") == "finished"]
            midway = [r for r in runs if read_outcome(r) is None and 2 <= len(saved := episodes_saved(r))
                      and max(saved) <= 8]
            if finished and midway:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # the whole sweep: the kernel ends everything in its namespaces
    finally:
        proc.kill()
        proc.wait()
    folder = sweep_folder(out)
    done_before = {r.name: (r / "metrics.csv").read_bytes() for r in finished}
    run = midway[0]
    checkpoint = max(episodes_saved(run))
    rows_before = (run / "metrics.csv").read_text().splitlines(keepends=True)[:1 + checkpoint]
    assert read_outcome(run) is None and checkpoint < 12

    # Moved (another disk, another mount), and resumed from another folder: the sweep's own folder holds
    # everything it needs, by paths relative to itself (not the base config's, nor its old place).
    moved = tmp_path / "moved" / folder.name
    moved.parent.mkdir()
    folder.rename(moved)
    folder, run = moved, moved / "trials" / run.name
    resumed = isolated([*DDPG, "sweep", "--resume", str(folder)], tmp_path / "home", ray_tmp, cwd=tmp_path,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = finish(resumed, 900)
    assert resumed.returncode == 0, output
    for name, metrics in done_before.items():  # not rerun: not one byte of their metrics changed
        assert (folder / "trials" / name / "metrics.csv").read_bytes() == metrics
    # Continued from its checkpoint: the rows up to it are the very ones written before the kill
    # (their timings would differ had the episodes been played again).
    assert (run / "metrics.csv").read_text().splitlines(keepends=True)[:1 + checkpoint] == rows_before
    for trial in trials(folder).values():
        assert read_outcome(trial)["status"] == "finished" and read_outcome(trial)["episode"] == 12
    assert (folder / "summary.csv").exists() and (folder / "best.toml").exists(), output


@ray_test
def test_a_cluster_sweep_survives_its_worker_dying_mid_trial(tmp_path, ray_tmp):
    proc = isolated([sys.executable, "tests/ray_cluster_scenario.py", str(tmp_path / "work")], tmp_path / "home",
                    ray_tmp, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = finish(proc, 1200)
    assert out.strip(), err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert "sweep_exit" in seen, err[-3000:]
    assert seen["sweep_exit"] == 0, seen["output"]
    # The killed trial ran on the worker, then again on the head, from its own checkpoint, to its end.
    assert seen["worker"] in seen["nodes_of_killed"] and len(seen["nodes_of_killed"]) == 2
    assert seen["episodes_of_killed"][-1] == 60 and seen["rows_kept"]
    assert set(seen["outcomes"].values()) == {"finished"} and seen["summary"]


ASHA = SMALL + '''[space]
"agent.tau" = { choice = [0.005, 0.02] }
"noise.sigma" = { uniform = [0.05, 0.3] }
[sweep]
seeds = [0, 1]
search = "random"
samples = 2
episodes = 8
max_concurrent = 2
scheduler = "asha"
grace_period = 1
reduction_factor = 2
'''


@ray_test
def test_asha_stops_trials_early_and_the_summary_counts_them_apart(tmp_path, ray_tmp):
    (tmp_path / "asha.toml").write_text(ASHA)
    out = tmp_path / "out"
    proc = isolated([*DDPG, "sweep", str(tmp_path / "asha.toml"), "--out", str(out)], tmp_path / "home", ray_tmp,
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = finish(proc, 900)
    assert proc.returncode == 0, output
    folder = sweep_folder(out)
    outcomes = {name: read_outcome(run) for name, run in trials(folder).items()}
    assert len(outcomes) == 4  # 2 random configurations x 2 seeds
    stopped = [o for o in outcomes.values() if o["status"] == "early_stopped"]
    assert stopped and all(o["episode"] < 8 for o in stopped), outcomes
    assert all(o["status"] in ("finished", "early_stopped") for o in outcomes.values()), outcomes
    assert not any(in_use(run) for run in trials(folder).values())  # each stopped trial let go of its run
    with open(folder / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["stopped_early"]) for r in rows) == len(stopped)


FAILING = SMALL + '''"env.kwargs" = { g = nan }  # gravity NaN: NaN observations, then NaN actions once the actor acts
[space]
"agent.tau" = { grid = [0.005, 0.02] }
[sweep]
seeds = [0]
episodes = 3
'''


@ray_test
def test_trials_that_fail_leave_a_record_are_counted_and_not_retried(tmp_path, ray_tmp):
    (tmp_path / "failing.toml").write_text(FAILING)
    out = tmp_path / "out"
    proc = isolated([*DDPG, "sweep", str(tmp_path / "failing.toml"), "--out", str(out)], tmp_path / "home", ray_tmp,
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    output, err = finish(proc, 900)
    assert proc.returncode == 2, output + err
    assert err.strip().splitlines()[-1].startswith("ddpg sweep: error: sweep: none of its 2 trial(s) succeeded")
    folder = sweep_folder(out)
    outcomes = {name: read_outcome(run) for name, run in trials(folder).items()}
    assert len(outcomes) == 2 and all(o["status"] == "failed" for o in outcomes.values()), outcomes
    assert all(o["reason"].startswith("TrainingError: the actor produced a non-finite action")
               for o in outcomes.values()), outcomes
    assert "retried" not in output and "2 of 2 trial(s) failed: TrainingError: the actor produced" in output
    with open(folder / "summary.csv") as f:
        assert sum(int(r["failed"]) for r in csv.DictReader(f)) == 2
    assert not (folder / "best.toml").exists()


SIGTERM_SCENARIO = """
import json, os, signal, subprocess, sys, time
from pathlib import Path
out = Path(sys.argv[1])
sweep = subprocess.Popen([sys.executable, "-m", "ddpg.cli", "sweep", sys.argv[2], "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
deadline = time.monotonic() + 600
while not any(out.glob("*/trials/*/checkpoints/episode_*.pt")) and time.monotonic() < deadline:
    time.sleep(0.1)
os.killpg(sweep.pid, signal.SIGTERM)  # as timeout, systemd and Slurm do: the whole process group
output, _ = sweep.communicate(timeout=300)
print(json.dumps({"code": sweep.returncode, "output": output}))
"""


@ray_test
def test_sigterm_to_the_sweeps_process_group_stops_it_as_ctrl_c_does(tmp_path, ray_tmp):
    sweep_file = tmp_path / "killable.toml"
    sweep_file.write_text(KILLABLE.replace("max_concurrent = 2", "max_concurrent = 1"))
    out = tmp_path / "out"
    proc = isolated([sys.executable, "-c", SIGTERM_SCENARIO, str(out), str(sweep_file)], tmp_path / "home", ray_tmp,
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, err = finish(proc, 900)
    seen = json.loads(stdout.strip().splitlines()[-1])
    output, folder = seen["output"], sweep_folder(out)
    ended = [r for r in trials(folder).values() if (read_outcome(r) or {}).get("status") == "finished"]
    assert seen["code"] == 128 + signal.SIGTERM and "SIGTERM received" not in output and "Traceback" not in output, output
    assert f"sweep interrupted: {4 - len(ended)} of 4 trial(s) unfinished; continue with: ddpg sweep --resume " \
           f"{folder}" in output, output
    resumed = isolated([*DDPG, "sweep", "--resume", str(folder)], tmp_path / "home", ray_tmp, cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = finish(resumed, 900)
    assert resumed.returncode == 0, output
    assert [read_outcome(r)["status"] for r in trials(folder).values()] == ["finished"] * 4
