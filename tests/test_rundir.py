"""Run directories that nothing can corrupt: one owner, verified checkpoints, repairable metrics,
and a way forward from every state a kill can leave (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
import signal
import time

import numpy as np
import pytest
import torch

from ddpg import checkpoint
from ddpg.checkpoint import save_checkpoint
from ddpg.cli import main
from ddpg.config import load_config
from ddpg.replay import ReplayBuffer
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


def _row_files(run) -> dict[str, tuple[int, int]]:
    """The run's buffer row files: name -> (inode, modification time in ns)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run / "checkpoints" / "rows").glob("*")}


def test_checkpoints_write_each_row_once_and_resume_exactly_across_the_wrap(tmp_path):
    """A 1000-transition buffer filled by 400 a episode wraps in episode 3. Each checkpoint writes one
    file of the 400 rows added since the last, never rewrites one, and keeps exactly the files its 2
    kept checkpoints list; a run stopped at episode 3 and resumed ends identical to one that was not."""
    options = [*PENDULUM, "agent.buffer_size=1000", "train.keep_checkpoints=2", "train.episodes=6"]
    run, seen = tmp_path / "whole", []
    trainer = Trainer(load_config(None, options), run)
    trainer.train(progress=False, on_episode=lambda row, checkpoint: seen.append(_row_files(run)))
    for episode, files in enumerate(seen, 1):
        assert f"{400 * (episode - 1):012d}-{400 * episode:012d}.npy" in files  # the new rows, once
        before = seen[episode - 2] if episode > 1 else {}
        assert all(files[name] == before[name] for name in files.keys() & before.keys())  # never rewritten
        # Episode e's checkpoint holds transitions 400e - 1000 to 400e; episode e-1's, 400(e-1) - 1000 on.
        oldest = max(400 * (episode - 1) - 1000, 0)
        assert sorted(files) == [f"{a:012d}-{a + 400:012d}.npy" for a in range(0, 400 * episode, 400) if a + 400 > oldest]
    whole = final_state(run)
    assert whole["buffer"]["size"] == 1000 and whole["buffer"]["added"] == 2400
    held = trainer.buffer.storage.numpy()[(torch.arange(1400, 2400) % 1000).numpy()]
    np.testing.assert_array_equal(whole["buffer"]["rows"], held)  # oldest first, as the ring holds them

    part = tmp_path / "resumed"
    Trainer(load_config(None, [*options, "train.episodes=3"]), part).train(progress=False)
    Trainer.resume(part, ["train.episodes=6"]).train(progress=False)
    assert_same_run(final_state(part), whole)


@pytest.mark.parametrize("harm", ["damaged", "missing"])
def test_resume_skips_a_checkpoint_whose_rows_are_damaged_or_missing(tmp_path, uninterrupted, capsys, harm):
    run = tmp_path / "run"
    Trainer(load_config(None, [*PENDULUM, "train.episodes=3"]), run).train(progress=False)
    rows = run / "checkpoints" / "rows" / "000000000800-000000001200.npy"  # listed by episode 3's only
    if harm == "damaged":
        data = bytearray(rows.read_bytes())
        data[-100] ^= 1
        rows.write_bytes(bytes(data))
    else:
        rows.unlink()
    # Evaluating reads no rows: the checkpoint still evaluates.
    assert main(["evaluate", str(run / "checkpoints" / "episode_000003.pt"), "--episodes", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(run), "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    reason = "do not match their checksum" if harm == "damaged" else "No such file or directory"
    assert f"skipping {run / 'checkpoints' / 'episode_000003.pt'}: its buffer's rows {rows}" in out and reason in out
    assert "from episode_000002.pt (episode 2)" in out
    assert_same_run(final_state(run), uninterrupted)


def test_a_format_2_checkpoint_resumes_and_its_rows_move_to_a_file(tmp_path, uninterrupted):
    """Format 2 kept the buffer's fields inside the checkpoint, in storage order: it resumes exactly,
    and the next checkpoint writes every held row to one file."""
    run = tmp_path / "run"
    Trainer(load_config(None, [*PENDULUM, "train.episodes=2"]), run).train(progress=False)
    path = run / "checkpoints" / "episode_000002.pt"
    payload = final_state(run)
    old = ReplayBuffer(2000, 3, 1)
    old.storage[:800] = torch.from_numpy(payload["buffer"].pop("rows"))
    payload["buffer"] = {k: v for k, v in payload["buffer"].items() if k not in ("added", "chunks")} | \
        {name: field[:800] for name, field in zip(ReplayBuffer.FIELDS, old._fields(old.storage))}
    save_checkpoint(payload | {"format": 2}, path)
    for other in [run / "checkpoints" / "episode_000001.pt", *(run / "checkpoints" / "rows").iterdir()]:
        other.unlink()
    Trainer.resume(run, ["train.episodes=4"]).train(progress=False)
    assert sorted(_row_files(run)) == ["000000000000-000000001200.npy", "000000001200-000000001600.npy"]
    assert_same_run(final_state(run), uninterrupted)


def test_a_checkpoint_that_fails_takes_its_new_rows_file_with_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = Trainer(load_config(None, [*PENDULUM, "train.episodes=1"]), run)
    trainer.train(progress=False)
    before = _row_files(run)
    trainer.run_episode()  # 400 more rows
    trainer.episode += 1

    def full(payload, path):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(checkpoint, "save_checkpoint", full)
    with pytest.raises(OSError):
        trainer.save()
    assert _row_files(run) == before and trainer._chunks == final_state(run)["buffer"]["chunks"]
