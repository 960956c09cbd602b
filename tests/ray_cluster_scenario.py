"""A two-node Ray cluster on loopback, a sweep submitted to it, its worker killed mid-trial.

Run by tests/test_sweep.py inside network and PID namespaces of its own (never on its own: it
starts Ray nodes). Prints one JSON line with what it saw. Usage: ray_cluster_scenario.py WORK_DIR
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ray

from ddpg.rundir import read_outcome

WORK = Path(sys.argv[1])
STORAGE = WORK / "shared"
RAY = str(Path(sys.executable).with_name("ray"))
ADDRESS = "127.0.0.1:6379"
# Notice a dead node within seconds rather than the default half minute.
ENV = dict(os.environ, RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="4",
           RAY_health_check_initial_delay_ms="0")
SWEEP = '''
base = "configs/pendulum.toml"
[overrides]
"agent.actor_hidden" = [32, 32]
"agent.critic_hidden" = [32, 32]
"agent.warmup_steps" = 200
"train.target_score" = "none"
"train.checkpoint_every" = 1
[space]
"agent.tau" = { grid = [0.005, 0.02] }
[sweep]
seeds = [0]
episodes = 60
'''


def node(*args: str) -> subprocess.Popen:
    # Its own session, so that the node and everything it starts can be stopped by process group.
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats", *args],
                            start_new_session=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_node(session: int) -> None:
    """SIGKILL every process of a node, as when its machine dies: Ray's workers leave the node's
    process group, but not its session."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # the session id
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def results(folder: Path) -> dict[str, list[dict]]:
    """Each trial's reported results so far, from Tune's result.json files."""
    out = {}
    for path in folder.glob("ray/*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.parent.name] = lines
    return out


def main() -> None:
    STORAGE.mkdir(parents=True)
    head = node("--head", "--port=6379", "--include-dashboard=false")
    worker = None
    seen: dict = {}
    try:
        time.sleep(3)
        worker = node(f"--address={ADDRESS}", '--resources={"worker": 1}')
        ray.init(address=ADDRESS, logging_level="ERROR")
        deadline = time.monotonic() + 120
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.monotonic() < deadline, "the worker never joined"
            time.sleep(0.5)
        worker_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "worker" in n["Resources"])
        ray.shutdown()
        (WORK / "sweep.toml").write_text(SWEEP)
        sweep = subprocess.Popen([sys.executable, "-m", "ddpg.cli", "sweep", str(WORK / "sweep.toml"),
                                  "--address", ADDRESS, "--storage", str(STORAGE)], env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        killed = None
        while killed is None:  # a trial on the worker, past its second checkpoint: kill the worker
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()
            folders = [p for p in STORAGE.iterdir() if p.is_dir()]
            for name, lines in (results(folders[0]) if folders else {}).items():
                if lines and lines[-1]["node"] == worker_id and 3 <= lines[-1]["episode"] <= 40:
                    killed = name
                    run_dir = folders[0] / lines[-1]["run_dir"]  # relative to the sweep folder
                    rows_before = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)[:3]
                    kill_node(worker.pid)
                    break
            time.sleep(0.2)
        output, _ = sweep.communicate(timeout=600)
        trial_results = results(folders[0])[killed]
        outcomes = {p.name: (read_outcome(p) or {}).get("status") for p in (folders[0] / "trials").iterdir()}
        seen = {"sweep_exit": sweep.returncode, "output": output[-3000:], "worker": worker_id,
                "killed_trial": killed, "nodes_of_killed": sorted({r["node"] for r in trial_results}),
                "episodes_of_killed": [r["episode"] for r in trial_results], "outcomes": outcomes,
                "rows_kept": (run_dir / "metrics.csv").read_text().splitlines(keepends=True)[:3] == rows_before,
                "summary": (folders[0] / "summary.csv").exists()}
    finally:
        for proc in (worker, head):
            if proc is not None:
                kill_node(proc.pid)
        print(json.dumps(seen))


if __name__ == "__main__":
    main()
