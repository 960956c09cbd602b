"""A trained policy for other programs: the deterministic actor alone (its normalization included, its
output already scaled to the action bounds), with a batch of any size, as an ONNX model (run with
onnxruntime, or any ONNX runtime) or a torch.export program (.pt2, loaded with
torch.export.load(path).module()). ONNX needs the extra ddpg[export]; this module is imported only by
`ddpg export`."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .config import ConfigError
from .policy import Policy

FORMATS = ("onnx", "pt2")
INSTALL = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'ddpg[export]'"


def check_out(path: Path, format: str) -> None:
    """ConfigError naming the problem, before anything is exported."""
    if format not in FORMATS:
        raise ConfigError(f"--format: must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "onnx" and any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript")):
        raise ConfigError(INSTALL)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--out: {path} is a folder; give the file to write")
    if not folder.is_dir():
        raise ConfigError(f"--out: {path}: no such folder {folder}")
    try:  # the only sure way to know (permissions, read-only mounts, /proc): write a file there
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        raise ConfigError(f"--out: {path}: cannot write in {folder}") from None


def export(policy: Policy, path: str | Path, format: str) -> Path:
    """Write the policy's actor to `path` as `format` (onnx or pt2), through a temporary file, so that a
    failure leaves nothing half-written."""
    path = Path(path)
    check_out(path, format)
    # Two observations traced, the batch left free: a batch of 1 would make torch.export fix it at 1.
    example = (torch.zeros(2, policy.obs_dim),)
    dynamic = {"obs": {0: torch.export.Dim("batch")}}
    tmp = path.with_name(f".{path.name}.tmp")
    quiet = logging.getLogger("torch.onnx")  # notes about operators a policy never uses (torchvision's)
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        with warnings.catch_warnings():  # put back after: the caller's filters stay the caller's
            warnings.simplefilter("ignore", FutureWarning)
            if format == "pt2":
                torch.export.save(torch.export.export(policy.actor, example, dynamic_shapes=dynamic), tmp)
            else:
                torch.onnx.export(policy.actor, example, tmp, dynamo=True, input_names=["obs"],
                                  output_names=["action"], dynamic_shapes=dynamic, verbose=False)
        os.replace(tmp, path)
    finally:
        quiet.setLevel(level)
        tmp.unlink(missing_ok=True)
    return path
