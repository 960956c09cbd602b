"""The `ddpg` command: demo, and (see `ddpg --help`) the rest of the workflow."""

from __future__ import annotations

import argparse
import sys

import numpy as np


class UserError(Exception):
    """A mistake in the user's input: printed as one line, without a traceback."""


def _demo(args: argparse.Namespace) -> None:
    from .envs.reacher import ReacherVectorEnv
    from .envs.scripted import scripted_actions
    from .video import check_video_path, write_video

    if args.video:
        check_video_path(args.video)
    env = ReacherVectorEnv(args.arms, render_mode="rgb_array" if args.video else None)
    obs, _ = env.reset(seed=args.seed)
    scores, frames, done = np.zeros(env.num_envs), [], False
    while not done:
        if args.video:
            frames.append(env.render())
        obs, reward, terminated, truncated, _ = env.step(scripted_actions(obs))
        scores += reward
        done = bool(np.any(terminated | truncated))
    print(f"scripted controller, {env.num_envs} arms, seed {args.seed}: mean score "
          f"{scores.mean():.2f} (min {scores.min():.2f}, max {scores.max():.2f}; best possible 40)")
    if args.video:
        print(f"video: {write_video(frames, args.video, env.metadata['render_fps'])}")
    env.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a scripted controller on Reacher and print its score")
    demo.add_argument("--arms", type=int, default=20, help="number of arms (default 20)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--video", metavar="FILE", help="also write a video (.mp4 or .gif)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UserError, ValueError, FileNotFoundError, PermissionError) as err:
        print(f"ddpg {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
