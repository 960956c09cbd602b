"""Time `ddpg demo --video` (20 arms, 1000 frames of 640x480, an MP4): the whole command, and the
parts spent rendering frames and writing the video. With --against REF, the same is timed for the
package as it was at git revision REF, alternating with this checkout, and the ratio is printed.

    flock /work/timing.lock .venv/bin/python benchmarks/video_speed.py --against main --repeats 3

Each run is a fresh process, so both sides pay the same start-up. A compiled extension built in this
checkout (src/ddpg/envs/*.so) is copied into REF's tree, which git holds only as source.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run in the child: the demo command, with its rendering and its video writing timed.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import ddpg, ddpg.video
from ddpg import cli
from ddpg.envs.reacher import ReacherVectorEnv
assert ddpg.__file__.startswith(sys.argv[1]), ddpg.__file__
spent = {"render": 0.0, "write": 0.0}
def timed(name, f):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper
ReacherVectorEnv.render = timed("render", ReacherVectorEnv.render)
ddpg.video.write_video = timed("write", ddpg.video.write_video)
start = time.perf_counter()
cli.main(["demo", "--arms", "20", "--video", sys.argv[2]])
spent["total"] = time.perf_counter() - start
print(json.dumps(spent))
"""


def checkout(ref: str, into: Path) -> Path:
    """The package's source at git revision `ref`, under `into`; returns its src folder."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for built in (ROOT / "src/ddpg/envs").glob("*.so"):
        shutil.copy(built, into / "src/ddpg/envs")
    return into / "src"


def run(src: Path, video: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(video)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REF", help="also time the package at this git revision")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this checkout": ROOT / "src"}
        if args.against:
            trees = {args.against: checkout(args.against, Path(tmp) / "against"), **trees}
        times: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, src in trees.items():
                times[name].append(run(src, Path(tmp) / "demo.mp4"))
    medians = {name: {k: statistics.median(t[k] for t in runs) for k in runs[0]} for name, runs in times.items()}
    print(f"ddpg demo --video, 20 arms, 1000 frames of 640x480; medians of {args.repeats} runs (s)")
    print(f"{'':>16} {'total':>7} {'render':>7} {'write':>7}")
    for name, m in medians.items():
        print(f"{name:>16} {m['total']:7.1f} {m['render']:7.1f} {m['write']:7.1f}")
    if args.against:
        old, new = medians[args.against], medians["this checkout"]
        print("ratio this / " + args.against + ": " +
              ", ".join(f"{k} {new[k] / old[k]:.2f}" for k in ("total", "render", "write")))


if __name__ == "__main__":
    main()
