"""Other machines' branches, forced on this Linux one: no C compiler (and so no compiled physics), a
MuJoCo library of another version, macOS and Windows (platform, rendering, the run lock, folders that
cannot be flushed), rendering backends that cannot start, and runs made on a machine with more cores."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpg.checkpoint import save_checkpoint
from ddpg.cli import main
from ddpg.envs.reacher import ReacherSim
from ddpg.envs.reacher import physics as physics_module
from runs import PENDULUM

# These force other platforms' branches from Linux (on macOS and Windows the real branches run).
linux_only = pytest.mark.skipif(platform.system() != "Linux", reason="forces other platforms' branches on Linux")
ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
REACHER = ["env.num_envs=2", "agent.actor_hidden=[16, 16]", "agent.critic_hidden=[16, 16]", "agent.batch_size=32",
           "agent.buffer_size=4000", "agent.learn_every=100", "agent.updates_per_learn=1", "train.episodes=1",
           "train.tensorboard=false", "train.target_score=none"]


def python(code: str, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter that sees the tests' helpers; DISPLAY and MUJOCO_GL as `env` says."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}
    environ |= {"PYTHONPATH": os.pathsep.join([str(TESTS), environ.get("PYTHONPATH", "")])} | (env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True,
                          **popen)


def steps(sim: ReacherSim, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of n decisions with a fixed sequence of actions."""
    rng = np.random.default_rng(3)
    obs, rewards = [sim.reset(np.random.default_rng(0))], []
    for _ in range(n):
        o, r = sim.step(np.clip(rng.standard_normal((sim.num_arms, 4)), -1, 1))
        obs.append(o)
        rewards.append(r)
    return np.array(obs), np.array(rewards)


# -- no C compiler: no compiled physics ------------------------------------------------------------------
def test_without_the_extension_the_reacher_runs_the_same_physics_in_numpy_with_one_warning(tmp_path):
    done = python(f"""
        import sys
        sys.modules["ddpg.envs.reacher._physics"] = None  # as if never built
        import numpy as np
        from ddpg.envs.reacher import ReacherSim, ReacherVectorEnv
        from test_platforms import steps
        obs, rewards = steps(ReacherSim(5))
        np.savez({str(tmp_path / "numpy.npz")!r}, obs=obs, rewards=rewards)
        ReacherVectorEnv(3)  # a second simulation: no second warning
        from ddpg.cli import main
        sys.exit(main(["train", "--quiet", "--run-dir", {str(tmp_path / "run")!r}, *{REACHER!r}]))
        """)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "ddpg: warning: the Reacher's compiled physics is unavailable: it is not built"), done.stderr
    assert "in NumPy" in lines[0] and "slower" in lines[0]
    numpy = np.load(tmp_path / "numpy.npz")
    obs, rewards = steps(ReacherSim(5))  # compiled, here
    assert isinstance(ReacherSim(1)._physics, physics_module._physics.Physics)
    np.testing.assert_allclose(numpy["obs"], obs, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(numpy["rewards"], rewards)
    assert (tmp_path / "run" / "checkpoints" / "episode_000001.pt").exists()


def test_a_mujoco_library_of_another_version_is_not_called(monkeypatch, capsys):
    monkeypatch.setattr(physics_module, "library_version", lambda lib: "2.0.0")
    monkeypatch.setattr(physics_module, "_warned", False)
    sims = ReacherSim(2), ReacherSim(2)
    assert all(isinstance(s._physics, physics_module.NumpyPhysics) for s in sims)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "does not match the bindings' version" in lines[0] and "is 2.0.0" in lines[0]


def test_the_compiled_step_refuses_arrays_of_the_wrong_size():
    sim = ReacherSim(2)
    assert isinstance(sim._physics, physics_module._physics.Physics)
    sim.reset(np.random.default_rng(0))
    with pytest.raises(ValueError, match="actions must be 8 contiguous values"):
        sim.step(np.zeros((3, 4)))
    sim.goal_angle = np.zeros(3)
    with pytest.raises(ValueError, match="goal_angle must be 2 contiguous values"):
        sim.step(np.zeros((2, 4)))


@linux_only
@pytest.mark.slow
def test_the_package_builds_without_a_c_compiler(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__",
                                                                               "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path / "wheels"), str(source)], capture_output=True, text=True,
                          env=dict(os.environ, CC="/nonexistent/cc"))
    assert done.returncode == 0, done.stderr
    names = zipfile.ZipFile(next((tmp_path / "wheels").glob("ddpg-*.whl"))).namelist()
    assert "ddpg/envs/reacher/physics.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


# -- macOS and Windows -----------------------------------------------------------------------------------
@linux_only
@pytest.mark.parametrize("system", ["Darwin", "Windows"])
def test_training_on_another_platform_with_no_display_and_no_mujoco_gl(system, tmp_path):
    done = python(f"""
        import os, platform, sys
        import torch  # loaded before the platform answers otherwise, as on the real machine
        platform.system = lambda: {system!r}
        from ddpg.cli import main
        code = main(["train", "--quiet", "--run-dir", {str(tmp_path / "pendulum")!r}, *{PENDULUM!r}])
        code = code or main(["train", "--quiet", "--run-dir", {str(tmp_path / "reacher")!r}, *{REACHER!r}])
        assert "MUJOCO_GL" not in os.environ, os.environ["MUJOCO_GL"]
        sys.exit(code)
        """)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@linux_only
def test_rendering_on_macos_chooses_its_backend_only_then(tmp_path):
    done = python(f"""
        import platform, sys
        import torch
        platform.system = lambda: "Darwin"
        from ddpg.cli import main
        sys.exit(main(["demo", "--arms", "1", "--video", {str(tmp_path / "demo.gif")!r}]))
        """)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("ddpg demo: error: MUJOCO_GL unset: cgl, Darwin's default with a display: "
                               "the cgl backend cannot start")
    assert not list(tmp_path.iterdir())


@linux_only
@pytest.mark.parametrize("value, message", [
    ("bogus", "MUJOCO_GL=bogus: not a rendering backend on Linux; use one of egl, osmesa, glfw, glx"),
    ("cgl", "MUJOCO_GL=cgl: not a rendering backend on Linux"),
    ("glfw", "MUJOCO_GL=glfw: the glfw backend cannot start"),  # no display
])
def test_a_rendering_backend_that_cannot_start_is_one_line_and_training_never_minds(value, message, tmp_path):
    gif = tmp_path / "demo.gif"
    done = python(f"""
        import sys
        from ddpg.cli import main
        sys.exit(main(["demo", "--arms", "1", "--video", {str(gif)!r}]))
        """, env={"MUJOCO_GL": value})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"ddpg demo: error: {message}"), lines[0]
    assert not gif.exists()
    done = python(f"""
        import sys
        from ddpg.cli import main
        sys.exit(main(["train", "--quiet", "--run-dir", {str(tmp_path / "run")!r}, *{REACHER!r}]))
        """, env={"MUJOCO_GL": value})
    assert done.returncode == 0 and done.stderr == "", done.stderr


def on_windows(folder: Path, body: str) -> str:
    """Code that runs `body` with rundir.py on its Windows branch, `folder` at hand."""
    return textwrap.dedent(f"""
        import sys
        import ddpg  # and what it loads, before msvcrt appears (the standard library would think it is on Windows)
        import fake_msvcrt
        sys.modules["msvcrt"], sys.modules["fcntl"] = fake_msvcrt, None  # no fcntl: rundir takes Windows' branch
        from pathlib import Path
        from ddpg import rundir
        assert rundir.fcntl is None
        folder = Path({str(folder)!r})
        """) + textwrap.dedent(body)


@linux_only
def test_the_run_lock_on_windows_is_held_for_the_run_and_dropped_when_its_process_dies(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", on_windows(folder, """
        lock = rundir.RunLock(folder)
        print("locked", flush=True)
        sys.stdin.read()
        """)], env=dict(os.environ, PYTHONPATH=str(TESTS)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        probe = on_windows(folder, """
            print(rundir.in_use(folder))
            try:
                rundir.RunLock(folder).release()
                print("taken")
            except rundir.RunDirError as err:
                print(err)
            """)
        held = python(probe)
        assert held.returncode == 0, held.stderr
        assert held.stdout.splitlines() == [
            "True", f"{folder}: in use by another ddpg process (pid {holder.pid}); wait for it to finish, "
                    "or choose another --run-dir"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    free = python(probe)
    assert free.stdout.splitlines() == ["False", "taken"], free.stderr


def test_checkpoints_on_windows_never_open_a_folder(tmp_path, monkeypatch):
    from ddpg import checkpoint
    monkeypatch.setattr(checkpoint, "DIRECTORY_FSYNC", False)
    opened = []
    real_open = os.open
    monkeypatch.setattr(checkpoint.os, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    save_checkpoint({"format": 1, "x": torch.ones(2)}, tmp_path / "c.pt")
    assert (tmp_path / "c.pt").exists() and not [p for p in opened if Path(p).is_dir()]


# -- a run made on a machine with more cores ---------------------------------------------------------------
def test_a_run_made_with_more_threads_than_this_machine_has_opens_anywhere(tmp_path, capfd):
    many = (os.cpu_count() or 1) + 6
    run = tmp_path / "run"
    before = torch.get_num_threads()
    assert main(["train", "--quiet", "--run-dir", str(run), *PENDULUM, f"train.threads={many}"]) == 0
    assert capfd.readouterr().err.strip() == (f"ddpg: note: train.threads = {many}, more than this machine's "
                                              f"{os.cpu_count()} cores; using {os.cpu_count()}")
    assert torch.get_num_threads() == before  # the run's setting did not outlive it
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert main(["plot", str(run)]) == 0
    assert main(["report", str(run), "--no-video", "--eval-episodes", "1"]) == 0
    assert main(["train", "--resume", str(run), "--episodes", "3", "--quiet"]) == 0
    assert main(["compare", str(run), "--out", str(tmp_path / "c.png")]) == 0
