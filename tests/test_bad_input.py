"""Every user mistake and damaged file we know of: one line on stderr naming the problem, a non-zero
exit, no traceback, and every file that was there before left byte-identical (docs/reliability.md)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
from ddpg.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from ddpg.cli import main
from ddpg.config import load_config
from ddpg.rundir import RunLock
from ddpg.trainer import Trainer
from runs import PENDULUM, flip_bytes_in_largest_tensor

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 2-episode Pendulum run with checkpoints after episodes 1 and 2."""
    run = tmp_path_factory.mktemp("base") / "run"
    Trainer(load_config(None, PENDULUM), run).train(progress=False)
    return run


def edit_newest_checkpoint(run: Path, change) -> None:
    path = sorted((run / "checkpoints").glob("*.pt"))[-1]
    payload = load_checkpoint(path)
    save_checkpoint(change(payload), path)


def copy_run(sandbox: Path, finished_run: Path) -> Path:
    run = sandbox / "run"
    shutil.copytree(finished_run, run)
    return run


def run_(edit=None):
    """Setup: a copy of the finished run, changed by `edit(run)`."""
    def setup(sandbox, finished_run):
        run = copy_run(sandbox, finished_run)
        if edit:
            edit(run)
        return run
    return setup


def folder(files: dict[str, str]):
    def setup(sandbox, finished_run):
        path = sandbox / "dir"
        path.mkdir()
        for name, text in files.items():
            (path / name).write_text(text)
        return path
    return setup


def a_file(sandbox, finished_run):
    path = sandbox / "file"
    path.write_text("x")
    return path


def nothing(sandbox, finished_run):
    return sandbox / "new"


def locked_copy(sandbox, finished_run):
    run = copy_run(sandbox, finished_run)
    locked_copy.lock = RunLock(run)  # held by "another process" for the length of the case
    return run


def locked_empty(sandbox, finished_run):
    path = sandbox / "empty"
    path.mkdir()
    locked_empty.lock = RunLock(path)
    return path


def damaged_checkpoints(run: Path, which=slice(None)):
    for path in sorted((run / "checkpoints").glob("*.pt"))[which]:
        flip_bytes_in_largest_tensor(path)


def write(name: str, text: str):
    return lambda run: (run / name).write_text(text)


def only_config(text: str):
    def edit(run):
        shutil.rmtree(run / "checkpoints")
        (run / "config.json").write_text(text)
    return edit


CASES = [
    # -- run directories
    ("train on a run dir another process owns", locked_copy, ["train", "--resume", "{P}"], "in use by another ddpg process"),
    ("new run in an empty dir another process owns", locked_empty,
     ["train", "--run-dir", "{P}", *PENDULUM], "in use by another ddpg process"),
    ("new run in a finished run's folder", run_(), ["train", "--run-dir", "{P}", *PENDULUM],
     r"already holds a run; continue it with ddpg train --resume"),
    ("new run in the user's own folder", folder({"config.json": '{"mine": 1}', "metrics.csv": "a,b\n1,2\n"}),
     ["train", "--run-dir", "{P}", *PENDULUM], "not empty and not a ddpg run"),
    ("run dir that is a file", a_file,
     ["train", "--run-dir", "{P}", *PENDULUM], "is a file, not a folder"),
    ("resume a missing folder", nothing, ["train", "--resume", "{P}"], "no such run directory"),
    ("resume the user's own folder", folder({"config.json": '{"mine": 1}'}), ["train", "--resume", "{P}"],
     r"nothing to resume: no checkpoint, and .*config.json: mine: unknown key"),
    ("resume with --config", run_(), ["train", "--resume", "{P}", "--config", "configs/reacher.toml"],
     "--config: cannot be used with --resume"),
    ("resume with --run-dir", run_(), ["train", "--resume", "{P}", "--run-dir", "elsewhere"],
     "--run-dir: cannot be used with --resume"),
    # -- checkpoints
    ("evaluate a damaged newest checkpoint", run_(lambda r: damaged_checkpoints(r, slice(-1, None))),
     ["evaluate", "{P}", "--episodes", "1"], r"data/\d+ does not match its checksum; the newest that verifies is .*episode_000001.pt"),
    ("resume when every checkpoint is damaged", run_(damaged_checkpoints), ["train", "--resume", "{P}"],
     "no usable checkpoint"),
    ("evaluate a checkpoint holding only its format", run_(lambda r: edit_newest_checkpoint(r, lambda p: {"format": CHECKPOINT_FORMAT})),
     ["evaluate", "{P}"], r"incomplete checkpoint \(no 'config'\)"),
    ("evaluate a checkpoint whose config is a string", run_(lambda r: edit_newest_checkpoint(r, lambda p: p | {"config": "x"})),
     ["evaluate", "{P}"], r"damaged checkpoint \('config' is a str\)"),
    ("evaluate a checkpoint of another format", run_(lambda r: edit_newest_checkpoint(r, lambda p: p | {"format": 7})),
     ["evaluate", "{P}"], "checkpoint format 7; this ddpg reads formats 2 and 3"),
    ("resume a checkpoint with a bad generator state", run_(lambda r: edit_newest_checkpoint(r, lambda p: p | {"rng": {"x": 1}})),
     ["train", "--resume", "{P}", "train.episodes=3"], "damaged random-generator state"),
    ("evaluate a text file", folder({"x.pt": "hello"}), ["evaluate", "{P}/x.pt"], "truncated or corrupt checkpoint"),
    ("evaluate a run without checkpoints or policy", run_(lambda r: (shutil.rmtree(r / "checkpoints"), (r / "policy.pt").unlink())),
     ["evaluate", "{P}"],
     "no checkpoint yet"),
    # -- metrics and config files
    ("plot a damaged metrics header", run_(lambda r: (r / "metrics.csv").write_text(
        "ep#%de,score\n" + "".join((r / "metrics.csv").read_text().splitlines(True)[1:]))),
     ["plot", "{P}"], r"metrics.csv: line 1: not a metrics header; `ddpg train --resume .*` repairs it"),
    ("plot a row whose episode is not a number", run_(lambda r: (r / "metrics.csv").write_text(
        (r / "metrics.csv").read_text().replace("\n2,", "\nabc,"))),
     ["plot", "{P}"], r"metrics.csv: line 3: episode 'abc' is not a number"),
    ("plot with config.json {} and no checkpoint", run_(only_config("{}")), ["plot", "{P}"],
     r"config.json: not a saved ddpg config"),
    ("plot with config.json [] and no checkpoint", run_(only_config("[]")), ["plot", "{P}"],
     r"config.json: not a saved ddpg config"),
    ("resume with a corrupt config.json and no checkpoint", run_(only_config("{oops")), ["train", "--resume", "{P}"],
     r"config.json: not valid JSON \(Expecting property name"),
    ("config file that is a folder", folder({}), ["train", "--config", "{P}"], r"dir: cannot read it \(Is a directory\)"),
    ("config file without end", nothing, ["train", "--config", "/dev/zero"], r"/dev/zero: larger than 1024 KiB"),
    # -- values
    ("networks too large to allocate", nothing, ["train", "--run-dir", "{P}", "agent.actor_hidden=[1000000,1000000]"],
     r"agent.actor_hidden, agent.critic_hidden: networks of 1,00\d,\d{3},\d{3},\d{3} parameters need"),
    ("a Pendulum kwarg that breaks its physics", nothing, ["train", "--run-dir", "{P}", *PENDULUM, 'env.kwargs.g="heavy"'],
     r"env.kwargs: Pendulum-v1 failed on its first step with \{'g': 'heavy'\} \(TypeError"),
    ("a Reacher kwarg of the wrong type", nothing, ["train", "--run-dir", "{P}", 'env.kwargs={goal_speed="fast"}'],
     r"env.kwargs: ddpg/Reacher-v0 refused \{'goal_speed': 'fast'\}"),
    ("replay.alpha huge", nothing, ["train", "--run-dir", "{P}", "replay.alpha=1e6"], r"replay.alpha: must be in \[0, 1\]"),
    ("replay.alpha infinite", nothing, ["train", "--run-dir", "{P}", "replay.alpha=inf"], "replay.alpha: must be a finite number"),
    ("a NaN learning rate", nothing, ["train", "--run-dir", "{P}", "agent.actor_lr=nan"], "agent.actor_lr: must be a finite number"),
    ("a negative seed", nothing, ["train", "--run-dir", "{P}", "train.seed=-1"], "train.seed: must be from 0 to 4294967295, got -1"),
    ("a huge seed", nothing, ["train", "--run-dir", "{P}", "--seed", "99999999999999999999"], "argument --seed: must be from 0 to"),
    ("negative threads", nothing, ["train", "--run-dir", "{P}", "train.threads=-1"], r"train.threads: must be >= 0"),
    ("a device that is not one", nothing, ["train", "--run-dir", "{P}", "train.device=tpu"],
     r"train.device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("a GPU this machine lacks", nothing, ["train", "--run-dir", "{P}", *PENDULUM, "--device", "cuda:7"],
     r"train.device: cuda:7 asked for, but (torch sees no CUDA device|this machine has \d CUDA device)"),
    ("an absurd number of environments", nothing, ["train", "--run-dir", "{P}", "env.num_envs=99999999999999999999999"],
     r"env.num_envs: 99999999999999999999999 environments need"),
    ("an environment needing Box2D", nothing, ["train", "--run-dir", "{P}", "env.id=LunarLander-v3", "env.kwargs.continuous=true"],
     r"env.id: LunarLander-v3 needs a package that is missing: Box2D is not installed, .*pip install"),
    ("wandb on without wandb", nothing, ["train", "--run-dir", "{P}", *PENDULUM, "train.wandb=true"],
     r"train.wandb: wandb is not installed; pip install 'ddpg\[wandb\]'"),
    ("unknown section", nothing, ["train", "--run-dir", "{P}", "foo.bar=1"], "foo: unknown key"),
    # -- resuming with changes that cannot work
    ("resume with more environments", run_(), ["train", "--resume", "{P}", "env.num_envs=3"],
     r"env.num_envs: cannot change when resuming \(the run has 2, asked for 3\)"),
    ("resume with other env kwargs", run_(), ["train", "--resume", "{P}", 'env.kwargs={goal_speed="fast"}'],
     "env.kwargs: cannot change when resuming"),
    ("resume with twin critics", run_(), ["train", "--resume", "{P}", "agent.twin_critics=true"],
     r"agent.twin_critics: cannot change when resuming"),
    ("resume with n-step returns", run_(), ["train", "--resume", "{P}", "agent.n_step=3"],
     r"agent.n_step: cannot change when resuming"),
    ("resume with another seed", run_(), ["train", "--resume", "{P}", "--seed", "9"],
     r"train.seed: cannot change when resuming \(the run has 5, asked for 9\)"),
    ("resume with fewer episodes than done", run_(), ["train", "--resume", "{P}", "--episodes", "1"],
     "train.episodes: the run has done 2 episodes already"),
    ("resume with wandb on without wandb", run_(), ["train", "--resume", "{P}", "train.wandb=true", "train.episodes=3"],
     "train.wandb: wandb is not installed"),
    # -- command-line values
    ("evaluate --envs -3", run_(), ["evaluate", "{P}", "--envs", "-3"], "argument --envs: must be at least 1, got -3"),
    ("evaluate --envs 0", run_(), ["evaluate", "{P}", "--envs", "0"], "argument --envs: must be at least 1, got 0"),
    ("evaluate --episodes -1", run_(), ["evaluate", "{P}", "--episodes", "-1"], "argument --episodes: must be at least 1"),
    ("evaluate --episodes 0", run_(), ["evaluate", "{P}", "--episodes", "0"], "argument --episodes: must be at least 1"),
    ("evaluate --episodes x", run_(), ["evaluate", "{P}", "--episodes", "x"], "argument --episodes: expected a positive whole number"),
    ("demo --arms 0", nothing, ["demo", "--arms", "0"], "argument --arms: must be at least 1"),
    ("watch Pendulum without pygame", run_(), ["watch", "{P}", "--out", "{P}/../v.mp4"],
     r"env.id: Pendulum-v1 needs a package that is missing: pygame is not installed"),
    ("watch into a path under a file", run_(), ["watch", "{P}", "--out", "{P}/config.json/v.mp4"],
     r"v.mp4: cannot write there \(.*config.json is a file, not a folder\)"),
    ("report a folder that holds no run", folder({"notes.txt": "mine"}), ["report", "{P}"],
     "no ddpg run directory in it or below it"),
    ("report a missing folder", nothing, ["report", "{P}"], "no such folder"),
    ("report into a file that is not a page", run_(), ["report", "{P}", "--out", "{P}/../report.txt"],
     r"report.txt: the report's file must end in .html"),
    ("report --eval-episodes 0", run_(), ["report", "{P}", "--eval-episodes", "0"], "argument --eval-episodes: must be at least 1"),
    ("a stray argument", nothing, ["evaluate", "x", "--bogus"], "unrecognized arguments: --bogus"),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_optional_packages_are_absent_so_their_cases_mean_something():
    for module in ("Box2D", "pygame", "wandb"):
        assert importlib.util.find_spec(module) is None, f"{module} is installed: its case above tests nothing"


@pytest.mark.parametrize("name, setup, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_invocation_is_one_line_and_loses_nothing(name, setup, argv, expected, finished_run, tmp_path,
                                                      monkeypatch, capfd):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)
    target = setup(sandbox, finished_run)
    before = snapshot(sandbox)
    try:
        code = main([a.replace("{P}", str(target)) for a in argv])
    except SystemExit as exit_:  # argparse's own exit
        code = exit_.code
    finally:
        for holder in (locked_copy, locked_empty):
            if hasattr(holder, "lock"):
                holder.lock.release()
                del holder.lock
    err = capfd.readouterr().err
    assert code not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(expected, lines[0]), lines[0]
    after = snapshot(sandbox)
    for name_, data in before.items():
        assert after.get(name_) == data, f"{name_} was changed or removed"
    assert {Path(n).name for n in set(after) - set(before)} <= {".lock"}, set(after) - set(before)
