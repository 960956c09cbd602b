"""Checkpoints: written atomically, loaded without executing anything from the file."""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file, flush it to disk, then rename: a crash leaves the old file whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


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
