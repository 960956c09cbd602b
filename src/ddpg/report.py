"""`ddpg report`: a run's write-up, made from the run itself. One self-contained HTML page (images
inline as data URIs: it opens from a file or an e-mail, with no network) and its Markdown twin
(images as files beside it); for several runs or a sweep, the comparison of `ddpg compare`.

Nothing on the page is typed twice: the field docs come from config.py, the layers from the real
networks, the scores from metrics.csv, the status from outcome.json and the run's lock.
Jinja2 comes with the extra `ddpg[report]`; nothing else in the package imports this module.
"""

from __future__ import annotations

import base64
import importlib.metadata
import math
import re
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .agent import DDPG
from .checkpoint import CheckpointError, agent_from_checkpoint, newest_checkpoint
from .compare import Run, group_runs, load_runs, plot_comparison, show, summarize, table
from .config import ConfigError, Config, field_docs
from .envs import ReacherVectorEnv
from .envs.factory import make_env
from .evaluation import episode_seed, run_policy
from .networks import Actor, Critic
from .plot import plot_diagnostics, plot_evaluation, plot_run, q_ceiling
from .tracking import METRICS_FILE
from .video import show_overlay, write_video

INSTALL = "ddpg report needs Jinja2: pip install 'ddpg[report]'"
REPORT_FILE = "report.html"
# The video: this many frames, one every VIDEO_STRIDE steps (so it plays that many times faster than
# the task's own rate), no wider than VIDEO_WIDTH pixels. Rendering is most of the report's time.
VIDEO_FRAMES = 150
VIDEO_STRIDE = 2
VIDEO_WIDTH = 480
VERSIONS = ("ddpg", "torch", "gymnasium", "mujoco")
STATUS = {"solved": "solved", "finished": "budget spent, not solved", "stopped": "stopped by a signal (resumable)",
          "early_stopped": "stopped early by a sweep's scheduler", "running": "still training",
          "failed": "failed"}


@dataclass
class Picture:
    file: str  # for the Markdown twin: the path relative to it
    data: str  # for the HTML page: a data URI


class Pictures:
    """The report's images, each a file in the folder beside the Markdown twin (made with the first)."""

    MEDIA = {".png": "image/png", ".gif": "image/gif"}

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def add(self, path: Path) -> Picture:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return Picture(f"{self.folder.name}/{path.name}", f"data:{self.MEDIA[path.suffix]};base64,{data}")


def default_out(paths: list[Path]) -> Path:
    """In the run's (or the sweep's) folder when one is given; else here."""
    return paths[0] / REPORT_FILE if len(paths) == 1 else Path(REPORT_FILE)


def write_report(paths: list[Path], out: Path | None, eval_episodes: int, video: bool,
                 seed: int) -> tuple[Path, Path, list[str]]:
    """Write the report of the runs in `paths` (one run: its write-up; several: their comparison) to
    `out` (.html) and its Markdown twin beside it; returns both paths and notes for the user."""
    try:
        import jinja2
    except ModuleNotFoundError:
        raise ConfigError(INSTALL) from None
    out = out or default_out(paths)
    if out.suffix.lower() != ".html":
        raise ValueError(f"{out}: the report's file must end in .html (its Markdown twin goes beside it)")
    runs = load_runs(paths)
    images = Pictures(out.with_name(f"{out.stem}_files"))
    if len(runs) == 1:
        context = run_context(runs[0], images, eval_episodes, video, seed)
        name = "run"
    else:
        context = comparison_context(runs, images)
        name = "comparison"
    context |= {"made": time.strftime("%Y-%m-%d %H:%M:%S %z"), "software": software()}
    settings = {"loader": jinja2.PackageLoader("ddpg", "templates"), "undefined": jinja2.StrictUndefined,
                "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
    html = jinja2.Environment(autoescape=True, **settings)
    # The Markdown twin escapes every value too: HTML passes through Markdown, and run names, group
    # names and config strings are the user's (or a hostile file's).
    md = jinja2.Environment(finalize=markdown_text, **settings)
    for env in (html, md):
        env.filters |= {"number": number, "duration": duration, "cell": lambda text: str(text).replace("\n", " "),
                        "code": code_span, "target": link_target}
    markdown = out.with_suffix(".md")
    out.write_text(html.get_template(f"{name}.html.j2").render(context))
    markdown.write_text(md.get_template(f"{name}.md.j2").render(context))
    return out, markdown, context["notes"]


# Markdown's punctuation that can start markup, HTML (< and &) included; a backslash makes each literal.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~<>&])")


class Safe(str):
    """Markdown made safe by its filter (a code span its text cannot close, a link's encoded target)."""


def markdown_text(value: Any) -> str:
    """A value as literal Markdown text: no markup, no HTML, no link can come of it."""
    if isinstance(value, Safe):
        return value
    return _MARKDOWN.sub(r"\\\1", "" if value is None else str(value))


def code_span(value: Any) -> Safe:
    """A Markdown code span its text cannot close: fenced by one backtick more than the longest run of
    backticks inside, on one line, `|` escaped for tables."""
    text = str(value).replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Safe(f"{fence}{pad}{text}{pad}{fence}")


def link_target(path: str) -> Safe:
    """A relative path as a Markdown link's target, percent-encoded: nothing in it can end the link."""
    return Safe(urllib.parse.quote(path))


def shown(path: Path) -> str:
    """The path from here when it is below here: a page that travels need not show the whole tree."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def number(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {s} s" if minutes else f"{seconds:.1f} s"


def software() -> dict[str, Any]:
    """Versions of what makes this report, and the ddpg source's git commit when it is a checkout."""
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"versions": versions, "commit": git_commit(Path(__file__).parent)}


def git_commit(source: Path) -> str | None:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # The package's own files must be tracked: an install inside someone else's repository is not a checkout.
    if not git("ls-files", "--error-unmatch", "__init__.py"):
        return None
    commit = git("rev-parse", "--short=12", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit and commit + (", with uncommitted changes" if changed else "")


# -- one run -------------------------------------------------------------------------------------------
def run_context(run: Run, images: Pictures, eval_episodes: int, video: bool, seed: int) -> dict[str, Any]:
    config, m = run.config, run.metrics
    train, notes = config.train, []
    if run.running:
        notes.append("partial report: the run is still training; its figures stop at the last episode recorded")
    env = make_env(config.env)
    try:
        obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
        largest = largest_reward(env)
        ceiling = None if largest is None else q_ceiling(largest, config.agent.gamma)
        unit = "arm" if isinstance(env, ReacherVectorEnv) else "environment"
        figures = {}
        if m is not None:
            figures["scores"] = images.add(plot_run(run.path, images.path("scores.png"), train.target_score,
                                                    train.window, (run.outcome or {}).get("solved_at")))
            figures["diagnostics"] = images.add(plot_diagnostics(m, images.path("diagnostics.png"), ceiling))
        evaluation = evaluate(run, env, eval_episodes, seed, images, unit)
    finally:
        env.close()
    if evaluation["error"]:
        notes.append(f"no evaluation: {evaluation['error']}")
    notes += [f"evaluation: {note}" for note in evaluation["skipped"]]
    clip = {"image": None, "error": "not asked for (--no-video)"}
    if video and evaluation["agent"] is None:
        clip["error"] = "no checkpoint to play"
    elif video:
        clip = record(config, evaluation["agent"], seed, images)
        if clip["error"]:
            notes.append(f"no video: {clip['error']}")
    return {"name": run.path.name, "path": shown(run.path), "notes": notes, "partial": run.running,
            "summary": summary(run), "figures": figures, "ceiling": ceiling, "largest_reward": largest,
            "gamma": config.agent.gamma, "unit": unit, "hyperparameters": hyperparameters(config),
            "architectures": architectures(config, obs_dim, act_dim), "evaluation": evaluation, "video": clip}


def summary(run: Run) -> dict[str, Any]:
    config, outcome = run.config, run.outcome or {}
    status = run.status
    if status == "failed":
        text = f"failed: {outcome['reason']}" if "reason" in outcome else "ended without a word (killed?)"
    elif status == "solved":
        text = f"solved at episode {outcome['solved_at']}"
    else:
        text = STATUS[status]
    found = {"env": config.env.id, "envs": config.env.num_envs, "kwargs": config.env.kwargs, "status": status,
             "status_text": text, "solved_at": outcome.get("solved_at"), "budget": config.train.episodes,
             "target": config.train.target_score, "window": config.train.window, "solve_on": config.train.solve_on,
             "wall_seconds": run.wall_seconds, "ended": outcome.get("ended"), "episodes": 0, "env_steps": None,
             "trailing_avg": None, "best_trailing_avg": None, "last_score": None, "last_recorded": None}
    m = run.metrics
    if m is not None:
        mtime = (run.path / METRICS_FILE).stat().st_mtime
        found |= {"episodes": int(m["episode"][-1]), "trailing_avg": float(m["trailing_avg"][-1]),
                  "best_trailing_avg": float(np.nanmax(m["trailing_avg"])), "last_score": float(m["score"][-1]),
                  "env_steps": int(m["env_steps"][-1]) if "env_steps" in m else None,
                  "last_recorded": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime))}
    return found


def largest_reward(env) -> float | None:
    """The largest reward of one step, when the environment declares it (reward_range)."""
    try:
        declared = env.get_attr("reward_range")[0] if hasattr(env, "get_attr") else env.reward_range
    except AttributeError:
        return None
    return float(declared[1])


def hyperparameters(config: Config) -> list[dict[str, Any]]:
    """Every config field: its value, the default, whether they differ, and its doc from config.py."""
    defaults, rows = Config(), []
    for key, doc in field_docs().items():
        section, name = key.split(".")
        value, default = (getattr(getattr(c, section), name) for c in (config, defaults))
        rows.append({"key": key, "section": section, "value": show(value), "default": show(default),
                     "differs": value != default, "doc": doc})
    return rows


def architectures(config: Config, obs_dim: int, act_dim: int) -> list[dict[str, Any]]:
    """Actor and critic layer by layer, from the networks the config builds (on the meta device: sizes
    only, nothing allocated)."""
    with torch.device("meta"):
        agent = DDPG(obs_dim, np.zeros(act_dim), np.ones(act_dim), config.agent, device="meta")
    nets = []
    for title, net, cls in (("Actor", agent.actor, Actor), ("Critic", agent.critic, Critic)):
        layers = [{"name": name, "kind": type(module).__name__, "detail": module.extra_repr() or "-",
                   "parameters": sum(p.numel() for p in module.parameters())}
                  for name, module in net.named_modules() if not any(module.children())]
        nets.append({"title": title, "doc": " ".join(cls.__doc__.split()), "layers": layers,
                     "parameters": sum(p.numel() for p in net.parameters())})
    return nets


def evaluate(run: Run, env, episodes: int, seed: int, images: Pictures, unit: str) -> dict[str, Any]:
    """The newest checkpoint's deterministic policy over `episodes` episodes (seeds as `ddpg evaluate`)."""
    result: dict[str, Any] = {"agent": None, "error": None, "episodes": episodes, "seed": seed, "skipped": []}
    try:
        found = newest_checkpoint(run.path)
        if found is None:
            return result | {"error": "the run has no checkpoint yet"}
        path, payload, result["skipped"] = found
        agent = agent_from_checkpoint(payload, env, path)
    except CheckpointError as err:
        return result | {"error": str(err)}
    scores = run_policy(env, agent.act, episodes, seed)
    per_episode = scores.mean(axis=1)
    figure = plot_evaluation(scores, images.path("evaluation.png"), run.config.train.target_score, unit)
    return result | {
        "agent": agent, "checkpoint": str(path.relative_to(run.path)), "checkpoint_episode": payload["episode"],
        "envs": scores.shape[1], "mean": float(scores.mean()), "std": float(per_episode.std()),
        "min": float(scores.min()), "median": float(np.median(scores)), "max": float(scores.max()),
        "figure": images.add(figure)}


def record(config: Config, agent: DDPG, seed: int, images: Pictures) -> dict[str, Any]:
    """A short GIF of the deterministic policy from the start of the first evaluation episode."""
    try:
        env = make_env(config.env, render_mode="rgb_array")
    except ConfigError as err:  # e.g. the environment's renderer needs a package that is missing
        return {"image": None, "error": str(err)}
    show_overlay(env)
    try:
        obs, _ = env.reset(seed=episode_seed(seed, 0))
        frames = []
        for step in range(VIDEO_FRAMES * VIDEO_STRIDE):
            if step % VIDEO_STRIDE == 0:
                frames.append(small(env.render()))
            obs, _, terminated, truncated, _ = env.step(agent.act(obs))
            if (terminated | truncated).any():  # the next step would restart it
                break
        fps = env.metadata.get("render_fps") or 30
    finally:
        env.close()
    path = write_video(frames, images.path("video.gif"), fps)
    return {"image": images.add(path), "error": None, "frames": len(frames), "stride": VIDEO_STRIDE}


def small(frame: np.ndarray) -> np.ndarray:
    from PIL import Image
    height, width = frame.shape[:2]
    if width <= VIDEO_WIDTH:
        return frame
    size = (VIDEO_WIDTH, round(height * VIDEO_WIDTH / width))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


# -- several runs --------------------------------------------------------------------------------------
def comparison_context(runs: list[Run], images: Pictures) -> dict[str, Any]:
    groups = group_runs(runs)
    caption, cells, table_notes = table(summarize(groups))
    figure = images.add(plot_comparison(groups, images.path("compare.png"))) \
        if any(r.metrics is not None for r in runs) else None
    running = sum(r.running for r in runs)
    notes = [f"partial report: {running} run(s) still training"] if running else []
    rows = [{"path": shown(r.path), "group": g.name, "summary": summary(r)} for g in groups for r in g.runs]
    return {"name": f"{len(runs)} runs in {len(groups)} group(s)", "notes": notes, "partial": bool(running),
            "running": running, "caption": caption, "header": cells[0], "cells": cells[1:], "table_notes": table_notes,
            "figure": figure, "runs": rows}
