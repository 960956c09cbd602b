"""The rendered Reacher: framing, scene, lit goals, overlay, and a simulation rendering cannot touch."""

import math

import numpy as np
import pytest

import ddpg  # noqa: F401  (registers the environments)
from ddpg.envs.reacher import env as reacher_env
from ddpg.envs.reacher import model as reacher
from ddpg.envs.reacher import render
from ddpg.envs.reacher import ReacherEnv, ReacherVectorEnv
from ddpg.envs.reacher.render import fit_camera
from ddpg.envs.scripted import scripted_actions


def random_actions(rng, n):
    return np.clip(rng.standard_normal((n, 4)), -1, 1)


def test_camera_fit_matches_the_distance_computed_by_hand():
    # One sphere of radius 10, fovy 90 degrees, a border of 10% of the shorter side (10 px).
    # Square 100x100: tan of the usable half-angle 1 * (1 - 2 * 10/100) = 0.8 on both axes, so
    # the sphere touches the frustum at distance 10 / sin(atan(0.8)) = 10 * sqrt(1.64) / 0.8.
    centre = np.array([[3.0, 4.0, -5.0]])
    square = fit_camera(centre, 10.0, 90.0, 100, 100, azimuth=90.0, elevation=-30.0, margin=0.1)
    assert square.distance == pytest.approx(10 * math.sqrt(1.64) / 0.8)
    np.testing.assert_allclose(square.lookat, centre[0], atol=1e-9)
    assert (square.azimuth, square.elevation) == (90.0, -30.0)
    # Tall 100x200: the width limits, tan = 1 * (100/200) * (1 - 2 * 10/100) = 0.4.
    tall = fit_camera(centre, 10.0, 90.0, 100, 200, azimuth=90.0, elevation=-30.0, margin=0.1)
    assert tall.distance == pytest.approx(10 * math.sqrt(1.16) / 0.4)
    # Two spheres side by side, camera level and looking along +y: centred between them, and far
    # enough that the outer edges touch the side planes: x = 40 + 10 / cos(a) must equal d tan(a)
    # with tan(a) = 0.8, so d = (40 + 10 * sqrt(1.64)) / 0.8.
    pair = fit_camera(np.array([[-40.0, 0, 0], [40.0, 0, 0]]), 10.0, 90.0, 100, 100,
                      azimuth=90.0, elevation=0.0, margin=0.1)
    np.testing.assert_allclose(pair.lookat, [0, 0, 0], atol=1e-9)
    assert pair.distance == pytest.approx((40 + 10 * math.sqrt(1.64)) / 0.8)


def test_envelope_radius_matches_the_reach_computed_by_hand():
    # The arm: pivot to elbow 7.02, elbow to hand centre 6, hand radius 1.
    assert render.envelope_radius(2.5) == pytest.approx(14.02)
    # A goal of radius 10: its centre is 8 out and 0.02 + 1 down from the pivot.
    assert render.envelope_radius(10.0) == pytest.approx(math.sqrt(8**2 + 1.02**2) + 10)


# The border: 2.5% of the width at the 640x480, 2.5% of the shorter side for other shapes.
@pytest.mark.parametrize("arms, width, height, border, goal_size", [
    (1, 640, 480, 16, 5.0), (20, 640, 480, 16, 5.0), (100, 640, 480, 16, 5.0),
    (20, 240, 400, 6, 5.0), (20, 480, 120, 3, 5.0), (4, 320, 240, 8, 20.0)])
def test_nothing_that_moves_is_in_the_border(arms, width, height, border, goal_size):
    """The issue's measure, pixels that change between frames, must stay off the border, for arms
    posed straight out in random directions (their full reach) and goals anywhere on their orbits.
    Changes of a few levels are the rasterizer's rounding, not motion. A goal size set on reset
    (goals larger than the arms' reach) reframes the picture."""
    env = ReacherVectorEnv(arms, render_mode="rgb_array", width=width, height=height)
    env.reset(seed=0)
    env.render()  # framed for the default goal size first
    env.reset(seed=0, options={"goal_size": goal_size})
    sim, rng = env.sim, np.random.default_rng(0)
    moved = np.zeros((height, width), bool)
    previous = env.render()
    for _ in range(30):
        pose = np.zeros((arms, 4))  # link A's two hinges, then link B's: straight when zero
        pose[:, :2] = rng.uniform(-np.pi, np.pi, (arms, 2))
        sim.data.qpos[:] = pose.ravel()
        sim.goal_angle = rng.uniform(0, 360, arms)
        frame = env.render()
        moved |= np.abs(frame.astype(int) - previous).max(axis=2) > 8
        previous = frame
    env.close()
    inner = np.zeros_like(moved)
    inner[border:-border, border:-border] = True
    assert moved[~inner].sum() == 0
    assert moved.sum() > 0.1 * width * height  # the arms were seen moving


def test_background_is_floor_and_sky_not_black():
    env = ReacherVectorEnv(20, render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    frame = env.render().astype(float)
    env.close()
    assert frame.mean() > 100  # was 5 of 255 before the floor and sky
    top, bottom = frame[:10].mean(axis=(0, 1)), frame[-10:].mean(axis=(0, 1))
    assert top[2] > top[0]  # the hazy horizon is bluish
    assert bottom.mean() > 100 and abs(bottom[2] - bottom[0]) < 30  # the floor is a light grey


def score_with_the_scripted_controller(env):
    """Step a one-arm env until its hand is inside the goal (the reward's own test)."""
    obs, _ = env.reset(seed=3)
    sim = env.sim
    for _ in range(200):
        obs, *_ = env.step(scripted_actions(obs[None])[0])
        gap = np.linalg.norm(sim.hand_positions()[0] - reacher.goal_positions(sim.goal_angle)[0])
        if gap < sim.reward_distance:
            return
    raise AssertionError("the scripted controller never reached the goal")


@pytest.mark.parametrize("hand_inside", [True, False])
def test_a_goal_lights_up_exactly_while_its_hand_is_inside(monkeypatch, hand_inside):
    env = ReacherEnv(render_mode="rgb_array", width=160, height=120)
    if hand_inside:
        score_with_the_scripted_controller(env)
    else:
        env.reset(seed=3)  # hanging at rest, 12 or more from any goal
    lit = env.render().astype(int)
    monkeypatch.setattr(render, "GOAL_LIT", env._renderer._goal_idle[0])
    idle = env.render().astype(int)
    env.close()
    changed = (lit != idle).any(axis=2)
    if hand_inside:
        assert changed.sum() > 50
        assert (lit[changed, 1] - idle[changed, 1]).mean() > 40  # green where the goal is
    else:
        assert not changed.any()


def test_rendering_leaves_the_simulation_untouched():
    """Observations and rewards of a rollout rendered every step equal those of one never rendered,
    bit for bit, and so does MuJoCo's whole state."""
    def rollout(rendered):
        env = ReacherVectorEnv(3, render_mode="rgb_array", width=64, height=48, overlay=True)
        obs, _ = env.reset(seed=1)
        rng = np.random.default_rng(1)
        out = [obs]
        for _ in range(40):
            if rendered:
                env.render()
            obs, reward, *_ = env.step(random_actions(rng, 3))
            out += [obs, reward[:, None]]
        state = [getattr(env.sim.data, name).tobytes() for name in ("qpos", "qvel", "qacc", "xpos",
                 "xquat", "cvel", "sensordata", "mocap_pos", "xfrc_applied")]
        env.close()
        return np.concatenate(out, axis=1), state

    plain, plain_state = rollout(False)
    rendered, rendered_state = rollout(True)
    assert plain.tobytes() == rendered.tobytes()
    assert plain_state == rendered_state


def test_the_scene_does_not_change_the_dynamics(monkeypatch):
    """Floor, sky, textures and lights are visual only: a model without them moves identically."""
    def rollout():
        env = ReacherVectorEnv(3)
        obs, _ = env.reset(seed=2)
        rng = np.random.default_rng(2)
        out = [obs]
        for _ in range(40):
            obs, reward, *_ = env.step(random_actions(rng, 3))
            out += [obs, reward[:, None]]
        return np.concatenate(out, axis=1), env.sim.model.ngeom

    with_scene, geoms = rollout()
    monkeypatch.setattr(reacher, "SCENE_XML", "")
    without_scene, bare_geoms = rollout()
    assert bare_geoms == geoms - 1  # the floor is the scene's only geom
    assert with_scene.tobytes() == without_scene.tobytes()


def test_overlay_shows_the_step_and_the_running_mean_score(monkeypatch):
    texts = []
    draw_text = render.draw_text
    monkeypatch.setattr(render, "draw_text", lambda frame, text: (texts.append(text), draw_text(frame, text)))
    env = ReacherVectorEnv(4, render_mode="rgb_array", width=160, height=120, overlay=True)
    plain = ReacherVectorEnv(4, render_mode="rgb_array", width=160, height=120)
    obs, _ = env.reset(seed=5)
    plain.reset(seed=5)
    total = np.zeros(4)
    for _ in range(120):
        actions = scripted_actions(obs)
        obs, reward, *_ = env.step(actions)
        plain.step(actions)
        total += reward
    with_text, without = env.render(), plain.render()
    assert texts == [f"step 120/1000   mean score {total.mean():.2f}"] and total.mean() > 0
    changed = np.argwhere((with_text != without).any(axis=2))
    assert len(changed) > 100 and changed[:, 0].max() < 120 // 4 and changed[:, 1].max() < 160
    env.reset(seed=5)  # a new episode starts from zero
    env.render()
    assert texts[-1] == "step 0/1000   mean score 0.00"
    assert not (ReacherVectorEnv(4, render_mode="rgb_array", width=160, height=120).overlay)
    env.close()
    plain.close()


def test_bad_frame_sizes_are_refused():
    with pytest.raises(ValueError, match="width and height must be positive, got 0x480"):
        ReacherVectorEnv(2, render_mode="rgb_array", width=0)


def test_frames_have_the_asked_size_and_videos_are_written(tmp_path):
    from ddpg.video import describe_video, write_video
    env = ReacherVectorEnv(num_envs=4, render_mode="rgb_array", width=160, height=90)
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(5):
        frames.append(env.render())
        obs, *_ = env.step(scripted_actions(obs))
    env.close()
    assert frames[0].shape == (90, 160, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[-1])
    for name in ("a.mp4", "a.gif"):
        path = write_video(frames, tmp_path / name, fps=12.5)
        assert path.stat().st_size > 1000
        assert describe_video(path, frames) == f"video: {path}, 5 frames of 160x90"
    with pytest.raises(ValueError, match="must end in .mp4 or .gif"):
        write_video(frames, tmp_path / "a.avi", fps=12.5)
    assert not list(tmp_path.glob(".*tmp*"))


def test_demo_video_has_the_overlay_and_reports_path_frames_and_size(tmp_path, monkeypatch, capsys):
    from ddpg.cli import main
    monkeypatch.setattr(reacher_env, "EPISODE_DECISIONS", 3)  # a 3-step episode
    texts = []
    draw_text = render.draw_text
    monkeypatch.setattr(render, "draw_text", lambda frame, text: (texts.append(text), draw_text(frame, text)))
    out = tmp_path / "demo.gif"
    assert main(["demo", "--arms", "2", "--video", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"video: {out}, 3 frames of 640x480"
    assert out.stat().st_size > 1000
    assert [t.split("   ")[0] for t in texts] == ["step 0/3", "step 1/3", "step 2/3"]


def test_watch_video_has_the_overlay_and_reports_path_frames_and_size(tmp_path, monkeypatch, capsys):
    from ddpg.cli import main
    from runs import PENDULUM
    monkeypatch.setattr(reacher_env, "EPISODE_DECISIONS", 3)  # 3-step episodes, in training and watching
    run = tmp_path / "run"
    reacher_run = [o for o in PENDULUM if not o.startswith("env.id")] + ["env.id=ddpg/Reacher-v0"]
    assert main(["train", "--quiet", "--run-dir", str(run), *reacher_run]) == 0
    texts = []
    draw_text = render.draw_text
    monkeypatch.setattr(render, "draw_text", lambda frame, text: (texts.append(text), draw_text(frame, text)))
    out = tmp_path / "watch.gif"
    capsys.readouterr()
    assert main(["watch", str(run), "--envs", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"video: {out}, 3 frames of 640x480")
    assert out.stat().st_size > 1000
    assert [t.split("   ")[0] for t in texts] == ["step 0/3", "step 1/3", "step 2/3"]


def test_the_reports_video_has_the_overlay(tmp_path, monkeypatch):
    from ddpg import report
    from ddpg.config import load_config
    monkeypatch.setattr(report, "VIDEO_FRAMES", 2)
    texts = []
    draw_text = render.draw_text
    monkeypatch.setattr(render, "draw_text", lambda frame, text: (texts.append(text), draw_text(frame, text)))

    class Still:
        def act(self, obs):
            return np.zeros((len(obs), 4))

    config = load_config(None, ["env.num_envs=2"])  # the built-in defaults are Reacher's
    video = report.record(config, Still(), 0, report.Pictures(tmp_path))
    assert video["frames"] == 2
    assert [t.split("   ")[0] for t in texts] == [f"step {k * report.VIDEO_STRIDE}/1000" for k in range(2)]
