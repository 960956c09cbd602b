"""The `ddpg` command: train, evaluate, watch, plot, report, compare, sweep, and a scripted Reacher demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import api
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .config import ConfigError, EnvConfig, load_config
from .envs.factory import make_env
from .evaluation import EVAL_EPISODES, EVAL_SEED, run_policy
from .policy import POLICY_FILE, POLICY_FORMAT, Policy
from .rundir import checkpoint_files, run_config
from .trainer import TrainingError


def _train(args: argparse.Namespace) -> None:
    if args.resume:
        for flag, value in (("--config", args.config), ("--run-dir", args.run_dir)):
            if value:
                raise ConfigError(f"{flag}: cannot be used with --resume (a resumed run keeps its folder and "
                                  "config; change single keys as section.key=value)")
    api.train(args.config, overrides=args.overrides, episodes=args.episodes, steps=args.steps, seed=args.seed,
              device=args.device, run_dir=args.run_dir, resume=args.resume, progress=not args.quiet)


def _evaluate(args: argparse.Namespace) -> None:
    path, policy, env = _policy(args.target)
    scores = api.evaluate(policy, env, episodes=args.episodes, seed=args.seed, num_envs=args.envs)
    per_episode = scores.mean(axis=1)
    print(f"{path}: deterministic policy, {args.episodes} episode(s) x {scores.shape[1]} env(s): mean "
          f"{per_episode.mean():.2f} +- {per_episode.std():.2f} over episodes; over all envs: min {scores.min():.2f}, "
          f"median {np.median(scores):.2f}, max {scores.max():.2f}")


def _policy(target: str) -> tuple[str, Policy, EnvConfig | str]:
    """The policy of a run directory (its newest checkpoint), checkpoint or policy file, what it was read
    from, and its environment (a run's as configured; a policy file's id)."""
    path = Path(target)
    if path.is_dir() and not checkpoint_files(path) or path.is_file() and load_checkpoint(path).get("format") == POLICY_FORMAT:
        policy = Policy.load(path)
        return str(path / POLICY_FILE if path.is_dir() else path), policy, policy.env_id
    checkpoint, payload = resolve_checkpoint(path)
    return (f"{checkpoint} (episode {payload['episode']})", Policy.load(checkpoint),
            load_config(base=payload["config"]).env)


def _watch(args: argparse.Namespace) -> None:
    from .video import check_video_path, describe_video, show_overlay, write_video
    check_video_path(args.out)
    path, policy, env = _policy(args.target)
    env = make_env(env, render_mode="rgb_array", num_envs=args.envs)
    show_overlay(env)
    frames: list = []
    scores = run_policy(env, policy, 1, args.seed, frames)
    fps = env.metadata.get("render_fps") or 30
    print(f"{path}: score {scores.mean():.2f}; {describe_video(write_video(frames, args.out, fps), frames)}")
    env.close()


def _plot(args: argparse.Namespace) -> None:
    from .plot import plot_run
    from .rundir import read_outcome
    run_dir = Path(args.run_dir)
    train = run_config(run_dir).train
    solved = (read_outcome(run_dir) or {}).get("solved_at")
    print(plot_run(run_dir, Path(args.out) if args.out else None, train.target_score, train.window, solved))


def _report(args: argparse.Namespace) -> None:
    from .report import write_report
    html, markdown, notes = write_report([Path(p) for p in args.paths], Path(args.out) if args.out else None,
                                         args.eval_episodes, args.video, args.seed)
    for note in notes:
        print(note)
    print(f"report: {html}; Markdown twin: {markdown} (images in {markdown.stem}_files/)")


def _compare(args: argparse.Namespace) -> None:
    from .compare import format_table, group_runs, load_runs, plot_comparison, summarize, write_summary_csv
    from .rundir import is_run
    paths = [Path(p) for p in args.paths]
    groups = group_runs(load_runs(paths))
    rows = summarize(groups, args.metric, args.mode)
    print(format_table(rows))
    if args.csv:
        print(f"summary: {write_summary_csv(rows, Path(args.csv))}")
    sweep = len(paths) == 1 and not is_run(paths[0])
    out = Path(args.out) if args.out else paths[0] / "compare.png" if sweep else Path("compare.png")
    print(f"plot: {plot_comparison(groups, out)}")


def _export(args: argparse.Namespace) -> None:
    from .export import check_out, export
    out = Path(args.out)
    check_out(out, args.format)  # before anything is read
    path, policy, _ = _policy(args.target)
    print(f"{path}: {policy} -> {export(policy, out, args.format)} ({args.format})")


def _demo(args: argparse.Namespace) -> None:
    from .envs import ReacherVectorEnv
    from .envs.scripted import scripted_actions
    from .video import check_video_path, describe_video, write_video

    if args.video:
        check_video_path(args.video)
    env = ReacherVectorEnv(args.arms, render_mode="rgb_array" if args.video else None, overlay=True)
    frames: list | None = [] if args.video else None
    scores = run_policy(env, scripted_actions, 1, args.seed, frames)
    print(f"scripted controller, {env.num_envs} arms: mean score {scores.mean():.2f} "
          f"(min {scores.min():.2f}, max {scores.max():.2f}; best possible 40)")
    if args.video:
        print(describe_video(write_video(frames, args.video, env.metadata["render_fps"]), frames))
    env.close()


def _sweep(args: argparse.Namespace) -> None:
    from . import sweep
    if args.resume:
        for flag, given in (("--storage", args.storage), ("--out", args.out != "sweeps-out")):
            if given:
                raise ConfigError(f"{flag}: cannot be used with --resume (the sweep goes on in its own folder)")
        sweep.resume(Path(args.resume), args.file, args.address)
    elif args.file:
        sweep.start(args.file, Path(args.out), args.address, args.storage)
    else:
        raise ConfigError("ddpg sweep: give a sweep file, or --resume SWEEP_FOLDER")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")  # one line, no usage dump


def _count(text: str) -> int:
    """A positive whole number, for --episodes, --envs, --arms."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**32 - 1}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddpg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent", description=(
        "Train DDPG. Any config field can be overridden as section.key=value, e.g. agent.gamma=0.98."))
    train.add_argument("overrides", nargs="*", metavar="section.key=value")
    train.add_argument("--config", metavar="FILE", help="TOML config (default: built-in defaults, i.e. Reacher)")
    train.add_argument("--run-dir", metavar="DIR", help="where the run's files go (default: runs/<env>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    train.add_argument("--seed", type=_seed, help="train.seed (refused on --resume if it differs)")
    train.add_argument("--device", help="train.device: where the networks and the replay buffer live: auto (a CUDA GPU "
                       "where there is one, else the CPU), cpu, cuda, cuda:N or mps")
    train.add_argument("--episodes", type=_count, help="train.episodes: the episode budget (on --resume: the new total); without --steps it alone counts")
    train.add_argument("--steps", type=_count, help="train.steps: a budget of environment steps over all "
                       "environments (on --resume: the new total); without --episodes it alone counts")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    for name, func, text in (("evaluate", _evaluate, "score the deterministic policy"),
                             ("watch", _watch, "record a video of the deterministic policy")):
        p = sub.add_parser(name, help=text)
        p.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
        if name == "evaluate":
            p.add_argument("--episodes", type=_count, default=EVAL_EPISODES)
        else:
            p.add_argument("--out", required=True, metavar="FILE.mp4|gif")
        p.add_argument("--envs", type=_count, help="number of envs/arms (default: as trained)")
        p.add_argument("--seed", type=_seed, default=EVAL_SEED, help=f"evaluation seed (default {EVAL_SEED}, unseen in training)")
        p.set_defaults(func=func)

    plot = sub.add_parser("plot", help="plot a run's scores")
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--out", metavar="FILE.png")
    plot.set_defaults(func=_plot)

    report = sub.add_parser("report", help="write a run's report: an HTML page and its Markdown twin",
                            description="Write a self-contained HTML page (images inline) and, beside it, a Markdown "
                            "twin (images as files) about a run: summary, scores, video, evaluation, diagnostics, "
                            "hyperparameters, architectures. Given several runs or a sweep's folder: their "
                            "comparison, as ddpg compare. See docs/report.md. Needs pip install 'ddpg[report]'.")
    report.add_argument("paths", nargs="+", metavar="PATH", help="a run directory; or several, or a folder (a sweep's) holding them")
    report.add_argument("--out", metavar="FILE.html", help="the page (default: report.html in the run's or sweep's folder, "
                        "or here for several paths); the twin is FILE.md, its images in FILE_files/")
    report.add_argument("--eval-episodes", type=_count, default=EVAL_EPISODES, metavar="K",
                        help=f"episodes of the final checkpoint's evaluation (default {EVAL_EPISODES})")
    report.add_argument("--video", action=argparse.BooleanOptionalAction, default=True,
                        help="a short GIF of the trained policy (default: on)")
    report.add_argument("--seed", type=_seed, default=EVAL_SEED, help=f"evaluation seed (default {EVAL_SEED}, as ddpg evaluate)")
    report.set_defaults(func=_report)

    sweep = sub.add_parser("sweep", help="run a sweep of many trainings (Ray Tune; pip install 'ddpg[sweep]')",
                           description="Run every configuration of a sweep file with each of its seeds, on Ray "
                           "Tune: locally by default, or on a cluster with --address. See docs/sweeps.md.")
    sweep.add_argument("file", nargs="?", metavar="SWEEP.toml")
    sweep.add_argument("--out", default="sweeps-out", metavar="DIR", help="where the sweep's folder goes (default sweeps-out/)")
    sweep.add_argument("--address", metavar="HOST:PORT", help="join a running Ray cluster (default: $RAY_ADDRESS, else "
                       "a local Ray on this machine)")
    sweep.add_argument("--storage", metavar="DIR", help="with --address: a folder every node mounts (the sweep's folder goes there)")
    sweep.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep (finished trials stay done)")
    sweep.set_defaults(func=_sweep)

    compare = sub.add_parser("compare", help="compare groups of runs (configs that differ only in the seed)",
                             description="Group runs whose configs differ only in the seed, rank the groups by a "
                             "metric (mean and IQM over seeds, 95%% bootstrap CIs) and plot their learning curves.")
    compare.add_argument("paths", nargs="+", metavar="PATH", help="run directories, or folders (a sweep's) holding them")
    compare.add_argument("--metric", choices=("trailing_avg", "score", "episodes_to_target"), default="trailing_avg",
                         help="per run: the final trailing average (default), the final episode score, or the "
                         "solve episode (unsolved runs rank last)")
    compare.add_argument("--mode", choices=("max", "min"), help="which end is best (default: min for "
                         "episodes_to_target, else max)")
    compare.add_argument("--out", metavar="FILE.png", help="the plot (default: compare.png here, or in the "
                         "folder when a single sweep folder is given)")
    compare.add_argument("--csv", metavar="FILE.csv", help="also write the table as CSV")
    compare.set_defaults(func=_compare)

    export = sub.add_parser("export", help="write a trained policy for other programs (ONNX, torch.export)",
                            description="Write the deterministic actor of a run (its newest checkpoint), a checkpoint "
                            "or a policy file, alone: normalization included, output scaled to the action bounds, "
                            "any batch size. onnx needs pip install 'ddpg[export]'. See docs/api.md.")
    export.add_argument("target", metavar="RUN_DIR_OR_POLICY")
    export.add_argument("--format", required=True, metavar="onnx|pt2", help="onnx (any ONNX runtime) or pt2 "
                        "(torch.export: torch.export.load(FILE).module())")
    export.add_argument("--out", required=True, metavar="FILE")
    export.set_defaults(func=_export)

    demo = sub.add_parser("demo", help="run a scripted controller on Reacher and print its score")
    demo.add_argument("--arms", type=_count, default=20, help="number of arms (default 20)")
    demo.add_argument("--seed", type=_seed, default=0)
    demo.add_argument("--video", metavar="FILE", help="also write a video (.mp4 or .gif)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may sit anywhere among the options (argparse alone takes them only in one run).
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if args.command != "train" or e.startswith("-") or "=" not in e]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError, PermissionError, ValueError, MemoryError) as err:
        print(f"ddpg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"ddpg {args.command}: stopped: {err}; the last good checkpoint is kept", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, read-only directory...
        print(f"ddpg {args.command}: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ddpg {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
