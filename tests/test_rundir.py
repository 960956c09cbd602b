"""Run directories that nothing can corrupt: one owner, verified checkpoints, repairable metrics,
and a way forward from every state a kill can leave (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from ddpg.cli import main
from ddpg.config import load_config
from ddpg.rundir import claim_default, in_use
from ddpg.tracking import COLUMNS, read_metrics
from ddpg.trainer import Trainer
from runs import PENDULUM, assert_same_run, cli, final_state, flip_bytes_in_largest_tensor


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The 4-episode run every interrupted one must end identical to."""
    run = tmp_path_factory.mktemp("whole") / "run"
    Trainer(load_config(None, [*PENDULUM, "train.episodes=4"]), run).train(progress=False)
    return final_state(run)


def episodes_in(run) -> list[int]:
    return [int(e) for e in read_metrics(run / "metrics.csv")["episode"]]


def test_second_training_on_one_run_dir_is_refused_while_the_first_runs(tmp_path):
    run = tmp_path / "run"
    first = cli("train", "--quiet", "--run-dir", str(run), *PENDULUM, "train.episodes=100000")
    try:
        deadline = time.monotonic() + 300
        while not (run / "metrics.csv").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        assert in_use(run)
        for args in (["--run-dir", str(run), *PENDULUM], ["--resume", str(run)]):
            second = cli("train", "--quiet", *args)
            out, err = second.communicate(timeout=300)
            assert second.returncode == 2 and err.strip().endswith(
                "in use by another ddpg process (pid %d); wait for it to finish, or choose another --run-dir" % first.pid)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=300) == 0
    finally:
        first.kill()  # never outlives the test, whatever failed above
        first.wait()
    assert not in_use(run)  # released at exit
    done = episodes_in(run)
    assert done == list(range(1, len(done) + 1))  # one run's rows, each episode once


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt: "20261124-120000")
    (a, lock_a), (b, lock_b) = claim_default(tmp_path, "pendulum-v1"), claim_default(tmp_path, "pendulum-v1")
    assert (a.name, b.name) == ("pendulum-v1-20261124-120000", "pendulum-v1-20261124-120000-2")
    assert in_use(a) and in_use(b)
    lock_a.release()
    lock_b.release()
    assert not in_use(a)


def test_two_default_named_trainings_at_once_write_two_runs(tmp_path):
    procs = [cli("train", "--quiet", *PENDULUM, cwd=tmp_path) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert episodes_in(run) == [1, 2]


def test_resume_skips_a_damaged_checkpoint_and_ends_identical(tmp_path, uninterrupted, capsys):
    run = tmp_path / "run"
    Trainer(load_config(None, [*PENDULUM, "train.episodes=3"]), run).train(progress=False)
    damaged = run / "checkpoints" / "episode_000003.pt"
    flip_bytes_in_largest_tensor(damaged)
    damaged_bytes = damaged.read_bytes()
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(run), "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    assert f"skipping {damaged}: corrupt checkpoint" in out
    assert "from episode_000002.pt (episode 2)" in out
    assert damaged.with_name("episode_000003.pt.damaged").read_bytes() == damaged_bytes  # kept aside
    assert_same_run(final_state(run), uninterrupted)
    assert episodes_in(run) == [1, 2, 3, 4]


def test_run_killed_during_its_first_checkpoint_starts_over_on_resume(tmp_path, uninterrupted, capsys):
    run = tmp_path / "run"
    Trainer(load_config(None, [*PENDULUM, "train.episodes=4"]), run).train(progress=False)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".episode_000001.pt.tmp").write_bytes(b"half a checkpoint")
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(run)]) == 0
    assert "from episode 0 (no checkpoint yet)" in capsys.readouterr().out
    assert_same_run(final_state(run), uninterrupted)
    assert episodes_in(run) == [1, 2, 3, 4]


def test_a_lost_config_json_is_rebuilt_from_the_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(load_config(None, PENDULUM), run).train(progress=False)
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text("{}")
    assert main(["plot", str(run)]) == 0  # the config comes from the newest checkpoint
    assert "using the config of" in capsys.readouterr().out
    (run / "config.json").unlink()
    assert main(["train", "--quiet", "--resume", str(run), "--episodes", "3"]) == 0
    assert json.loads((run / "config.json").read_text()) == saved | {"train": saved["train"] | {"episodes": 3}}


def test_damaged_metrics_are_repaired_from_the_checkpoint_and_the_original_kept(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(load_config(None, PENDULUM), run).train(progress=False)
    path = run / "metrics.csv"
    header, row1, row2 = path.read_text().splitlines(keepends=True)
    damaged = "ep#s%de\n" + row1.replace(",", ";", 3) + row2
    path.write_text(damaged)
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(run), "--episodes", "3"]) == 0
    assert "1 row(s) rebuilt from the checkpoint's scores, header rewritten" in capsys.readouterr().out
    assert (run / "metrics.csv.damaged-1").read_text() == damaged
    lines = path.read_text().splitlines(keepends=True)
    assert lines[0] == header and lines[2] == row2 and len(lines) == 4
    rebuilt = dict(zip(COLUMNS, lines[1].strip().split(",")))
    assert float(rebuilt["score"]) == pytest.approx(float(dict(zip(COLUMNS, row1.split(",")))["score"]))
    assert rebuilt["critic_loss"] == "nan"  # known only to the run that wrote the row


def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(load_config(None, PENDULUM), run).train(progress=False)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name not in (".lock", "scores.png")}
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(run)]) == 0
    assert "nothing to do (its budget is spent); extend it with --episodes or --steps" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before
