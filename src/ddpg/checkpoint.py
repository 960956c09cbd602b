"""Checkpoints: written atomically, loaded without executing anything from the file, verified; and
those of a run directory: written and pruned, what they must hold, the newest that verifies, and the
agent rebuilt from one.

A run's checkpoints keep the replay buffer's rows apart, in checkpoints/rows/: each checkpoint writes
only the rows added since the one before, as one file, and lists the files that hold its buffer with
their CRC-32; files no kept checkpoint lists are deleted. A Reacher run then writes 58 MB a
checkpoint, not up to 292 MB."""

from __future__ import annotations

import errno
import io
import math
import os
import pickle
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .agent import DDPG
from .config import Config, ConfigError, first_line, load_config
from .replay import ReplayBuffer
from .rundir import CHECKPOINTS, checkpoint_files


CHECKPOINT_FORMAT = 3  # 2: the buffer's rows inside the checkpoint (still read)
READABLE_FORMATS = (2, 3)
ROWS = "rows"  # checkpoints/rows/: the buffer's rows, each file written once and listed by checkpoints
# A folder can be opened and flushed to disk on POSIX systems; on Windows it cannot be opened at all.
DIRECTORY_FSYNC = os.name == "posix"
# What a checkpoint of a run must hold, and of which type, before any of it is used.
_PAYLOAD_TYPES = {"config": dict, "obs_dim": int, "act_dim": int, "episode": int, "steps": int,
                  "env_steps": int, "scores": list, "evals": list, "best_eval": (float, type(None)),
                  "wall_seconds": float,
                  "solved_at": (int, type(None)), "agent": dict, "buffer": (dict, type(None)),
                  "noise": dict, "rng": dict, "torch_rng": torch.Tensor, "python_rng": tuple}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file, flush it to disk, then rename: a crash leaves the old file whole. A
    failed write is an OSError naming the file, whatever layer found it."""
    path = Path(path)
    _save_atomically(lambda f: torch.save(payload, f), path)
    return path


class _Summing:
    """A file that keeps the CRC-32 of what is written to it (as zip does of each checkpoint member;
    a third of SHA-256's time)."""

    def __init__(self, file):
        self.file, self.crc32 = file, 0

    def write(self, data) -> int:
        self.crc32 = zlib.crc32(data, self.crc32)
        return self.file.write(data)


def _save_atomically(write, path: Path):
    """`write(file)` into a temporary file, flushed to disk, then renamed to `path` (the rename flushed
    too); returns what `write` returned."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        raise _write_error(err, path) from None
    finally:
        tmp.unlink(missing_ok=True)
    if DIRECTORY_FSYNC:  # the rename itself reaches the disk
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return result


def _write_error(err: OSError | RuntimeError, path: Path) -> OSError:
    """A failed checkpoint write as an OSError that names the checkpoint: torch reports a short write
    (a full disk) as a RuntimeError of its zip writer, and a flush's OSError names no file."""
    if isinstance(err, RuntimeError):
        if "inline_container" not in str(err) and "PytorchStreamWriter" not in str(err):
            raise err  # not a write that failed
        full = shutil.disk_usage(path.parent).free < 1 << 20
        code = errno.ENOSPC if full else errno.EIO
    else:
        code = err.errno or errno.EIO
    return OSError(code, os.strerror(code), str(path))


def _non_finite(value: Any, where: str = "") -> str | None:
    if isinstance(value, torch.Tensor):
        return where if value.is_floating_point() and not torch.isfinite(value).all() else None
    if isinstance(value, dict):
        return next((w for k, v in value.items() if (w := _non_finite(v, f"{where}/{k}"))), None)
    if isinstance(value, (list, tuple)):
        return next((w for i, v in enumerate(value) if (w := _non_finite(v, f"{where}/{i}"))), None)
    if isinstance(value, float) and not math.isfinite(value):
        return where
    return None


def _verify(path: Path) -> None:
    """Check every stored member against the CRC-32 the zip format keeps for it: torch.load itself
    would read damaged weights without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({str(err).splitlines()[0]})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint: {bad} does not match its checksum")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload; CheckpointError for a missing, truncated, corrupt, unsafe or non-finite file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    _verify(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0] if "Weights only load failed" not in str(err) else \
            "it holds objects other than tensors and plain values, refused so that nothing in it runs"
        raise CheckpointError(f"{path}: not a usable checkpoint: {reason}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(f"{path}: not a ddpg checkpoint")
    if where := _non_finite(payload):
        raise CheckpointError(f"{path}: holds a non-finite value at {where}")
    return payload


# -- the checkpoints of a run directory ---------------------------------------------------------------
def write_checkpoint(run_dir: Path, payload: dict[str, Any], name: str, keep: int | None = None,
                     buffer: ReplayBuffer | None = None) -> Path:
    """Write checkpoints/`name` atomically; with `buffer`, first the rows it gained since the files that
    payload["buffer"]["chunks"] lists (the last checkpoint's), that list then extended. With `keep`,
    delete all but the newest `keep` periodic checkpoints, and the row files none of them lists."""
    folder = run_dir / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    new = None
    if buffer is not None:
        payload["buffer"]["chunks"], new = _write_rows(folder / ROWS, buffer, payload["buffer"]["chunks"])
    try:
        path = save_checkpoint(payload, folder / name)
    except BaseException:
        if new is not None:  # listed by no checkpoint
            new.unlink(missing_ok=True)
        raise
    if buffer is not None:
        _listed[_key(path)] = {chunk["file"] for chunk in payload["buffer"]["chunks"]}
    if keep is not None:
        for old in checkpoint_files(run_dir)[keep:]:
            _listed.pop(_key(old), None)
            old.unlink()
        listed = set().union(*map(_listed_by, checkpoint_files(run_dir)))
        for rows in (folder / ROWS).glob("*.npy"):
            if rows.name not in listed:
                rows.unlink()
    return path


# The row files each checkpoint lists, as this process wrote or read them (reading one back costs 50 ms).
_listed: dict[tuple[str, int, int, int], set[str]] = {}


def _key(path: Path) -> tuple[str, int, int, int]:
    stat = path.stat()
    return str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns


def _write_rows(folder: Path, buffer: ReplayBuffer, chunks: list[dict]) -> tuple[list[dict], Path | None]:
    """The row files that hold `buffer` now: those of `chunks` it still holds rows of, and a new one
    (returned too; None when nothing was added) with the rows added after them."""
    oldest = buffer.added - buffer.size
    kept = [chunk for chunk in chunks if chunk["last"] > oldest]
    first = kept[-1]["last"] if kept else oldest  # none kept: more than the buffer was added since
    if first == buffer.added:
        return kept, None
    folder.mkdir(exist_ok=True)
    path = folder / f"{first:012d}-{buffer.added:012d}.npy"
    stretches = buffer.rows(first, buffer.added)

    def write(file):  # one .npy array, written stretch by stretch from the buffer's own memory
        summing = _Summing(file)
        np.lib.format.write_array_header_1_0(summing, {
            "descr": np.lib.format.dtype_to_descr(stretches[0].dtype), "fortran_order": False,
            "shape": (buffer.added - first, stretches[0].shape[1])})
        for stretch in stretches:
            summing.write(memoryview(stretch))
        return summing.crc32
    crc32 = _save_atomically(write, path)
    return kept + [{"file": path.name, "first": first, "last": buffer.added, "crc32": crc32}], path


def _listed_by(path: Path) -> set[str]:
    """The names of the row files a checkpoint lists (none for one that cannot be read: no resume uses it)."""
    key = _key(path)
    if key not in _listed:
        try:
            buffer = torch.load(path, map_location="cpu", weights_only=True)["buffer"]
            _listed[key] = {chunk["file"] for chunk in buffer["chunks"]} if buffer else set()
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, TypeError):
            _listed[key] = set()
    return _listed[key]


def read_rows(path: Path, state: dict) -> np.ndarray:
    """The rows of the buffer that the checkpoint at `path` lists (its state `state`), oldest first,
    each file checked against its CRC-32; CheckpointError naming a missing, damaged or mismatched file."""
    oldest, parts = state["added"] - state["size"], []
    for chunk in state["chunks"]:
        file = path.parent / ROWS / chunk["file"]
        try:
            data = file.read_bytes()
        except OSError as err:
            raise CheckpointError(f"{path}: its buffer's rows {file}: {err.strerror or err}") from None
        if zlib.crc32(data) != chunk["crc32"]:
            raise CheckpointError(f"{path}: its buffer's rows {file} do not match their checksum")
        rows = np.load(io.BytesIO(data), allow_pickle=False)
        parts.append(rows[max(oldest - chunk["first"], 0):])
    rows = np.concatenate(parts) if parts else np.empty((0, 0), np.float32)  # reshaped when loaded
    if len(rows) != state["size"]:
        raise CheckpointError(f"{path}: its row files hold {len(rows)} transitions for a buffer of {state['size']}")
    return rows


def read_checkpoint(path: Path) -> dict:
    """A verified checkpoint whose contents are all there and of the right kinds."""
    payload = load_checkpoint(path)
    if payload["format"] not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format {payload['format']!r}; this ddpg reads formats "
                              f"{' and '.join(map(str, READABLE_FORMATS))}")
    for key, kind in _PAYLOAD_TYPES.items():
        if key not in payload:
            raise CheckpointError(f"{path}: incomplete checkpoint (no {key!r})")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} is a {type(payload[key]).__name__})")
    if len(payload["scores"]) != payload["episode"]:
        raise CheckpointError(f"{path}: damaged checkpoint ({len(payload['scores'])} episode scores for "
                              f"{payload['episode']} episodes)")
    try:
        load_config(base=payload["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its saved config is invalid ({err})") from None
    return payload


def _usable(path: Path) -> bool:
    try:
        read_checkpoint(path)
        return True
    except CheckpointError:
        return False


def newest_checkpoint(run_dir: Path, rows: bool = False) -> tuple[Path, dict, list[str]] | None:
    """The newest checkpoint that verifies, with a note for each newer one that did not; None if the
    run has no checkpoint at all. With `rows`, its buffer's row files must verify too, and their rows
    are in payload["buffer"]["rows"]."""
    notes = []
    for path in checkpoint_files(run_dir):
        try:
            payload = read_checkpoint(path)
            if rows and payload["buffer"] is not None and "chunks" in payload["buffer"]:
                payload["buffer"]["rows"] = read_rows(path, payload["buffer"])
            return path, payload, notes
        except CheckpointError as err:
            notes.append(f"skipping {err}")
    if notes:
        raise CheckpointError(f"{run_dir}: no usable checkpoint ({'; '.join(notes)})")
    return None


def resolve_checkpoint(target: str | Path) -> tuple[Path, dict]:
    """A checkpoint file, or the newest checkpoint of a run directory, verified; a damaged newest one
    is refused, naming the newest one that verifies."""
    path = Path(target)
    if path.is_dir():
        files = checkpoint_files(path)
        if not files:
            raise CheckpointError(f"{path}: no checkpoint yet in {path / CHECKPOINTS}")
        try:
            return files[0], read_checkpoint(files[0])
        except CheckpointError as err:
            good = next((f for f in files[1:] if _usable(f)), None)
            raise CheckpointError(f"{err}; " + (f"the newest that verifies is {good}" if good else
                                                "no older checkpoint verifies either")) from None
    return path, read_checkpoint(path)


def agent_from_checkpoint(payload: dict, env: gym.vector.VectorEnv, path: Path, config: Config | None = None,
                          device: str | torch.device = "cpu") -> DDPG:
    """The checkpoint's agent (built per `config`, else the checkpoint's own) on `device`, whatever
    device made it, after checking it was made for this env's observation and action sizes."""
    obs_dim = env.single_observation_space.shape[0]
    act_dim = env.single_action_space.shape[0]
    if (payload["obs_dim"], payload["act_dim"]) != (obs_dim, act_dim):
        raise CheckpointError(
            f"{path}: made for observations of size {payload['obs_dim']} and actions of size "
            f"{payload['act_dim']}; this environment has {obs_dim} and {act_dim}")
    config = config or load_config(base=payload["config"])
    agent = DDPG(obs_dim, env.single_action_space.low, env.single_action_space.high, config.agent, device=device)
    try:
        agent.load_state_dict(payload["agent"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: networks do not fit the configuration ({first_line(err)})") from None
    return agent
