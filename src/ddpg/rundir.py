"""Run directories: one owner at a time, names that cannot collide, what a folder holds, its config
file and its outcome; with checkpoint.py (what its checkpoints hold), everything the trainer, the
command line, reports, comparisons and sweeps read of a run. Neither torch nor Ray is imported here,
so that runs can be compared without them.

A run directory is owned through an OS lock on its `.lock` file (flock on POSIX, a locked byte on
Windows), held for the run's life. The OS drops the lock when the process dies, however it dies, so
a kill never leaves a stale lock.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
BEST_CHECKPOINT = "best.pt"  # the best evaluated policy, beside the periodic episode_*.pt
LOCK_FILE = ".lock"
OUTCOME_FILE = "outcome.json"  # how the last session ended: solved, finished, stopped or failed


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message names it and the way forward."""


# Windows locks bytes, and a byte locked by one process cannot be read by another: the byte locked
# lies far past the owner's pid, written at the start, which others read to say who owns the run.
_LOCKED_BYTE = 2**30


def _try_lock(fd: int, shared: bool = False) -> bool:
    """Lock the open lock file without waiting; False when another holder has it. Windows has no
    shared lock: there a probe takes the lock and gives it back at once (_unlock)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    return True


def _unlock(fd: int) -> None:
    """Give the lock back and close the file (on POSIX closing alone drops the flock)."""
    if fcntl is None:
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    os.close(fd)


class RunLock:
    """Exclusive ownership of a run directory until `release()` or the process's end."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise _in_use(run_dir)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            self._fd = None


def _in_use(run_dir: Path) -> RunDirError:
    try:
        owner = (run_dir / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        owner = "unknown"
    return RunDirError(f"{run_dir}: in use by another ddpg process (pid {owner}); wait for it to finish, "
                       "or choose another --run-dir")


def in_use(run_dir: Path) -> bool:
    """True while some process (this one included) owns the run directory."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    if _try_lock(fd, shared=True):
        _unlock(fd)
        return False
    os.close(fd)
    return True


def contents(run_dir: Path) -> list[str]:
    """What the folder holds, apart from a lock file (which a run that died early may leave)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)


def is_run(run_dir: Path) -> bool:
    """A folder with checkpoints, or with a config.json that is a ddpg config."""
    if (run_dir / CHECKPOINTS).is_dir():
        return True
    try:
        load_config(base=read_config_file(run_dir))
        return True
    except (RunDirError, ConfigError):
        return False


def claim_new(run_dir: Path) -> RunLock:
    """Create (or take an empty) folder for a new run and own it; anything else is refused."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: is a file, not a folder; choose another --run-dir")
    if in_use(run_dir):
        raise _in_use(run_dir)
    if contents(run_dir):
        if is_run(run_dir):
            raise RunDirError(f"{run_dir}: already holds a run; continue it with ddpg train --resume {run_dir}, "
                              "or choose another --run-dir")
        raise RunDirError(f"{run_dir}: not empty and not a ddpg run; a new run needs an empty or new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    if contents(run_dir):  # another process got there between the look and the lock
        lock.release()
        raise RunDirError(f"{run_dir}: another ddpg process has just started a run here; choose another --run-dir")
    return lock


def claim_default(parent: Path, stem: str) -> tuple[Path, RunLock]:
    """A new folder `parent/stem-YYYYmmdd-HHMMSS[-k]`, owned: mkdir is atomic, so two runs started in
    the same second take different suffixes."""
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    for k in range(1, 10_000):
        run_dir = parent / (base if k == 1 else f"{base}-{k}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        try:
            return run_dir, RunLock(run_dir)
        except RunDirError:
            continue
    raise RunDirError(f"{parent}: could not create a new run folder named {base}-k")


def read_config_file(run_dir: Path) -> dict[str, Any]:
    """The run's saved config.json as a dict; RunDirError naming the file if it is unusable."""
    path = run_dir / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not data:
        raise RunDirError(f"{path}: not a saved ddpg config (expected a table of sections, got {json.dumps(data)[:40]})")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically: a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_config_file(run_dir: Path, config: dict[str, Any]) -> None:
    _write_json(run_dir / CONFIG_FILE, config)


def write_outcome(run_dir: Path, outcome: dict[str, Any]) -> None:
    _write_json(run_dir / OUTCOME_FILE, outcome)


def read_outcome(run_dir: Path) -> dict[str, Any] | None:
    """How the run's last session ended, or None (never ended: running, or killed)."""
    try:
        data = json.loads((run_dir / OUTCOME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None



def checkpoint_files(run_dir: Path) -> list[Path]:
    """The run's periodic checkpoints, newest first."""
    return sorted((run_dir / CHECKPOINTS).glob("episode_*.pt"), reverse=True)


def run_config(run_dir: Path) -> Config:
    """A run's config: its config.json, else (when that is missing or damaged) its newest checkpoint's."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    try:
        return load_config(base=read_config_file(run_dir))
    except (RunDirError, ConfigError) as err:
        found = None
        if checkpoint_files(run_dir):
            from .checkpoint import newest_checkpoint  # torch, only when a checkpoint must stand in
            found = newest_checkpoint(run_dir)
        if found is None:
            raise RunDirError(f"{run_dir / CONFIG_FILE}: {err}" if isinstance(err, ConfigError) else str(err)) from None
        print(f"{err}; using the config of {found[0]}")
        return load_config(base=found[1]["config"])
