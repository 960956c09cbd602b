"""Training that survives kills, signals, NaNs, full disks and bad files (docs/reliability.md)."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ddpg.agent import DDPG
from ddpg.cli import main
from ddpg.config import ConfigError, load_config
from ddpg.rundir import read_outcome
from ddpg.tracking import COLUMNS, repair_metrics
from ddpg.trainer import Trainer, TrainingError
from runs import assert_same_run, cli, final_state, mount_namespaces

SMALL = ["env.num_envs=2", "agent.actor_hidden=[32, 32]", "agent.critic_hidden=[32, 32]",
         "agent.batch_size=64", "agent.learn_every=50", "agent.updates_per_learn=4",
         "agent.buffer_size=20000", "train.tensorboard=false", "train.threads=1", "train.seed=5",
         "train.target_score=none"]


def wait_for(predicate, timeout=300.0):
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "the training process did not get there"
        time.sleep(0.05)


@pytest.mark.parametrize("fixes", [[], ["agent.n_step=3", "agent.twin_critics=true", "agent.target_noise=0.2",
                                         "agent.policy_delay=2"]], ids=["ddpg", "n-step-td3"])
def test_sigkill_then_resume_ends_identical_to_an_uninterrupted_run(fixes, tmp_path):
    """Killed mid-episode: with n-step returns too (the windows then pending are those of the episode
    replayed), and the target noise's generator."""
    options = [*SMALL, "train.episodes=5", "train.checkpoint_every=1", *fixes]
    Trainer(load_config(None, options), tmp_path / "whole").train(progress=False)

    run = tmp_path / "killed"
    proc = cli("train", "--quiet", "--run-dir", str(run), *options)
    checkpoints = run / "checkpoints"
    wait_for(lambda: (checkpoints / "episode_000002.pt").exists())
    proc.send_signal(signal.SIGKILL)  # during episode 3: an episode takes about a second
    proc.wait()
    assert not (checkpoints / "episode_000003.pt").exists()  # killed unfinished, not after the end
    resumed = cli("train", "--quiet", "--resume", str(run))
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert "from episode_000002.pt (episode 2)" in out

    assert_same_run(final_state(tmp_path / "whole"), final_state(run))
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]


def test_sigterm_writes_a_checkpoint_that_resumes(tmp_path):
    run = tmp_path / "run"
    proc = cli("train", "--quiet", "--run-dir", str(run), *SMALL, "train.episodes=1000",
               "train.checkpoint_every=1000")
    wait_for(lambda: (run / "metrics.csv").exists())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by signal" in out and f"--resume {run}" in out
    stopped = final_state(run)
    done = stopped["episode"]
    assert read_outcome(run)["status"] == "stopped" and read_outcome(run)["episode"] == done
    assert 1 <= done < 1000
    resumed = cli("train", "--quiet", "--resume", str(run), f"train.episodes={done + 1}")
    assert resumed.wait() == 0, resumed.stderr.read()
    after = final_state(run)
    assert after["episode"] == done + 1 and after["scores"][:done] == stopped["scores"]


def test_injected_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    learn = DDPG.learn

    def poisoned(self, batch):
        out = learn(self, batch)
        if self.updates > 100:  # 4 updates every 50 steps: updates 101-104 come at step 26 * 50
            out["critic_loss"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(DDPG, "learn", poisoned)
    run = tmp_path / "run"
    code = main(["train", "--quiet", "--run-dir", str(run), *SMALL, "train.episodes=5", "train.checkpoint_every=1"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpg train: stopped: non-finite critic_loss at step 1300 (episode 2, update 104)")
    assert len(err.splitlines()) == 1
    assert [p.name for p in (run / "checkpoints").glob("*.pt")] == ["episode_000001.pt"]
    assert final_state(run)["episode"] == 1
    outcome = read_outcome(run)
    assert outcome["status"] == "failed" and outcome["reason"].startswith("TrainingError: non-finite critic_loss")


def test_non_finite_action_is_caught(tmp_path):
    trainer = Trainer(load_config(None, SMALL), tmp_path)
    with torch.no_grad():
        trainer.agent.actor.body[-2].bias.fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite action at step 0"):
        trainer.run_episode()


FULL_DISK = """
import json, subprocess, sys
from pathlib import Path
run, small = Path(sys.argv[1]) / "run", json.loads(sys.argv[2])
ddpg = [sys.executable, "-m", "ddpg.cli", "train", "--quiet"]
first = subprocess.run([*ddpg, "--run-dir", str(run), *small, "train.episodes=1"], capture_output=True, text=True)
before = {str(p): p.read_bytes().hex() for p in (run / "checkpoints").rglob("*") if p.is_file()}
second = subprocess.run([*ddpg, "--resume", str(run), "train.episodes=2"], capture_output=True, text=True)
after = {str(p): p.read_bytes().hex() for p in (run / "checkpoints").rglob("*") if p.is_file()}
outcome = json.loads((run / "outcome.json").read_text())
print(json.dumps({"first": first.returncode, "code": second.returncode, "err": second.stderr, "same": before == after,
                  "outcome": outcome}))
"""


@pytest.mark.skipif(not mount_namespaces(), reason="needs a mount namespace of its own (root, unshare) for a small tmpfs")
def test_a_really_full_disk_is_one_line_and_leaves_earlier_checkpoints_whole(tmp_path):
    """On a real 1 MB filesystem (a tmpfs in the test's own mount namespace): the first checkpoint
    (2,000 transitions, 584 kB of rows) fits, the second's 2,000 new rows do not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1024k tmpfs "$1" && shift && exec "$@"',
                           "sh", str(disk), sys.executable, "-c", FULL_DISK, str(disk), json.dumps(SMALL)],
                          capture_output=True, text=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first"] == 0 and seen["code"] == 1, seen
    lines = seen["err"].strip().splitlines()
    rows = f"{disk}/run/checkpoints/rows/000000002000-000000004000.npy"
    assert lines == [f"ddpg train: error: No space left on device: {rows}"], lines
    assert seen["same"]  # the earlier checkpoint and its rows byte for byte, and no temporary file beside them
    assert seen["outcome"]["status"] == "failed" and "No space left on device" in seen["outcome"]["reason"]


def test_replay_buffer_that_cannot_fit_is_refused_with_the_figure(tmp_path):
    # 292 bytes a Reacher transition (2 x 33 + 4 + 3 floats): 2.92e12 bytes = 2719.5 GiB
    with pytest.raises(ConfigError, match=r"agent.buffer_size: 10,000,000,000 transitions .*need 2,719.5 GiB"):
        Trainer(load_config(None, [*SMALL, "agent.buffer_size=10_000_000_000", "train.save_buffer=false"]), tmp_path)


def metrics_line(episode: int, scores: list[float], window_scores: list[float]) -> str:
    """A row as the trainer writes it, with the score columns of `scores` and NaN elsewhere."""
    values = dict.fromkeys(COLUMNS, "nan") | {
        "episode": str(episode), "score": repr(float(np.mean(scores))), "score_std": repr(float(np.std(scores))),
        "score_min": repr(float(min(scores))), "score_max": repr(float(max(scores))),
        "trailing_avg": repr(float(np.mean(window_scores)))}
    return ",".join(values[k] for k in COLUMNS) + "\n"


def test_metrics_file_cut_by_a_kill_is_repaired_without_a_backup(tmp_path):
    history = [[0.5, 0.5], [0.7, 0.9]]
    header = ",".join(COLUMNS) + "\n"
    rows = [metrics_line(1, history[0], [0.5]), metrics_line(2, history[1], [0.5, 0.8])]
    path = tmp_path / "metrics.csv"
    path.write_text(header + rows[0] + rows[1] + "3,0.")
    assert repair_metrics(path, history, window=100) is None
    assert path.read_text() == header + rows[0] + rows[1]
    assert repair_metrics(path, history[:1], window=100) is None  # rows after the checkpoint are replayed
    assert path.read_text() == header + rows[0]
    assert not list(tmp_path.glob("*.damaged*"))
