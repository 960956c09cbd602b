"""Write a list of RGB frames as an MP4 or a GIF, chosen by the file's extension."""

from __future__ import annotations

import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".gif")


def check_video_path(path: str | Path) -> Path:
    """The path, if its extension is one we can write; ValueError naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: video must end in .mp4 or .gif")
    blocker = next(p for p in path.parents if p.exists())
    if not blocker.is_dir():
        raise ValueError(f"{path}: cannot write there ({blocker} is a file, not a folder)")
    try:  # before any frame is rendered
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise ValueError(f"{path}: cannot write there ({err.strerror})") from None
    return path


def write_video(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write frames to `path` through a temporary file, so a failure leaves no half-written video."""
    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        if path.suffix.lower() == ".gif":
            imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
        else:
            # macro_block_size=1 keeps odd frame sizes as they are instead of resizing them.
            imageio.mimsave(tmp, frames, fps=fps, macro_block_size=1)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def describe_video(path: Path, frames: list[np.ndarray]) -> str:
    """One line for the user: where the video is, how many frames and their size."""
    height, width = frames[0].shape[:2]
    return f"video: {path}, {len(frames)} frames of {width}x{height}"


def show_overlay(env) -> None:
    """Have the env write what a viewer needs on each frame (the Reacher: the episode step and the
    running mean score), where it can."""
    if hasattr(env.unwrapped, "overlay"):
        env.unwrapped.overlay = True
