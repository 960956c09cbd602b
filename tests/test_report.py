"""`ddpg report`: pages made from short real runs (Pendulum, and a 2-arm Reacher for the video and the
Q ceiling): every section, nothing external, every image decodes, the figures stated against values
computed by hand or by the modules that own them; runs without checkpoints or still going; several
runs; and a real browser that renders the page."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image

import ddpg.report as report
from ddpg.cli import main
from ddpg.compare import group_runs, load_runs, summarize, table
from ddpg.config import Config, field_docs, load_config
from ddpg.envs.reacher import ReacherVectorEnv
from ddpg.plot import q_ceiling
from ddpg.report import duration, git_commit, largest_reward
from ddpg.checkpoint import agent_from_checkpoint, read_checkpoint
from ddpg.envs.factory import make_env
from ddpg.evaluation import run_policy
from ddpg.resume import config_changes
from ddpg.rundir import RunLock
from ddpg.trainer import Trainer
from runs import PENDULUM, flip_bytes_in_largest_tensor

SECTIONS = {"summary", "scores", "video", "evaluation", "diagnostics", "hyperparameters", "architectures"}
REACHER = ["env.num_envs=2", "agent.actor_hidden=[16, 16]", "agent.critic_hidden=[16, 16]", "agent.batch_size=32",
           "agent.buffer_size=5000", "agent.learn_every=100", "agent.updates_per_learn=1", "train.episodes=2",
           "train.window=2", "train.checkpoint_every=1", "train.tensorboard=false"]
FRAMES = 6  # of the test's videos (the command makes VIDEO_FRAMES)
ARTIFACTS = Path(__file__).parent / "artifacts"


class Page(HTMLParser):
    """What a test needs of a page: section ids, every src/href, images, table rows, the text."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []  # (the row's class, its cells' text)
        self.tags: set[str] = set()
        self.text = ""
        self._row: list[str] | None = None
        self._cell: str | None = None
        self.feed(text)
        self.text = " ".join(self.text.split())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(attrs["id"])
        self.links += [attrs[a] for a in ("src", "href") if a in attrs]
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr":
            self._row = []
            self.rows.append((attrs.get("class") or "", self._row))
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(" ".join(self._cell.split()))
            self._cell = None

    def handle_data(self, data):
        if self.lasttag in ("style", "script"):
            return
        self.text += f" {data}"
        if self._cell is not None:
            self._cell += data


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def data_uri(src: str) -> bytes:
    match = re.fullmatch(r"data:image/(png|gif);base64,([A-Za-z0-9+/=]+)", src)
    assert match, src[:60]
    return base64.b64decode(match[2], validate=True)


def make_report(run: Path, *args: str, out: Path | None = None) -> tuple[Page, str, Path]:
    argv = ["report", str(run), *args] + (["--out", str(out)] if out else [])
    assert main(argv) == 0
    html = out or run / "report.html"
    return Page(html.read_text()), html.with_suffix(".md").read_text(), html


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    Trainer(load_config(None, PENDULUM), root / "pendulum").train(progress=False)
    Trainer(load_config(None, REACHER), root / "reacher").train(progress=False)
    return root


@pytest.fixture(scope="module")
def pendulum(runs) -> tuple[Page, str, Path]:
    return make_report(runs / "pendulum", "--eval-episodes", "2")


@pytest.fixture(scope="module")
def reacher(runs) -> tuple[Page, str, Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "VIDEO_FRAMES", FRAMES)
        return make_report(runs / "reacher", "--eval-episodes", "1")


def copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / run.name, ignore=shutil.ignore_patterns("report*"))
    return tmp_path / run.name


# -- pieces, by hand ---------------------------------------------------------------------------------
def test_every_config_field_has_its_doc_from_config_py():
    docs = field_docs()
    fields = [f"{s.name}.{f.name}" for s in dataclasses.fields(Config) for f in dataclasses.fields(s.default_factory)]
    assert list(docs) == fields and all(docs.values())
    assert docs["agent.tau"] == "Soft update: target <- tau * local + (1 - tau) * target, after every update."
    assert docs["train.steps"].startswith("Step budget: environment steps over all environments, as SB3's "
                                          "total_timesteps (\"none\": only the episode budget counts). Whichever")


def test_q_ceiling_is_the_largest_discounted_return():
    assert q_ceiling(0.04, 0.99) == pytest.approx(4.0)  # 0.04 every step: 0.04 / (1 - 0.99)
    assert q_ceiling(1.0, 0.5) == 2.0  # 1 + 1/2 + 1/4 + ...
    assert q_ceiling(0.0, 0.9) == 0.0 and q_ceiling(1.0, 1.0) == float("inf")
    # Reacher: 0.01 for each of the 4 physics steps of a decision that ends in the goal.
    assert ReacherVectorEnv.reward_range == pytest.approx((0.0, 0.04))
    env = make_env(load_config(None, ["env.num_envs=2"]).env)
    assert largest_reward(env) == pytest.approx(0.04)
    env.close()
    env = make_env(load_config(None, PENDULUM).env)
    assert largest_reward(env) is None  # Pendulum declares none
    env.close()


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (9.94, 125, 3725, float("nan"))] == ["9.9 s", "2 min 5 s", "1 h 2 min", "-"]


def test_git_commit_of_a_checkout_and_of_a_plain_folder(tmp_path):
    source = Path(report.__file__).parent
    head = subprocess.run(["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("ddpg is not installed from a git checkout here")
    assert git_commit(source).split(",")[0] == head.stdout.strip()
    assert git_commit(tmp_path) is None


# -- one run -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["pendulum", "reacher"])
def test_page_and_twin_hold_every_section_and_nothing_external(which, request):
    page, markdown, html = request.getfixturevalue(which)
    assert set(page.sections) == SECTIONS
    assert not [link for link in page.links if re.match(r"\s*(https?:)?//", link, re.I)]
    assert "link" not in page.tags and all(link.startswith(("data:", "#")) for link in page.links)
    assert page.images and all(decode(data_uri(src)) for src in page.images)
    headings = re.findall(r"^## (.+)$", markdown, re.M)
    assert {h.lower() for h in headings} == SECTIONS
    files = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert len(files) == len(page.images)
    for name in files:
        assert (html.parent / name).is_file() and decode((html.parent / name).read_bytes())
        assert not name.startswith("/")  # beside the twin, so the pair can move together


def test_summary_and_evaluation_state_the_runs_own_figures(pendulum, runs):
    page, markdown, _ = pendulum
    run = runs / "pendulum"
    last = (run / "metrics.csv").read_text().splitlines()[-1].split(",")
    assert "2 of a budget of 2" in page.text and f"final trailing average {float(last[6]):,.2f}" in page.text
    assert "budget spent, not solved" in page.text and "no target" in page.text
    # The evaluation: the final checkpoint's deterministic policy, 2 episodes, seeds as ddpg evaluate.
    path = sorted((run / "checkpoints").glob("episode_*.pt"))[-1]
    payload = read_checkpoint(path)
    env = make_env(load_config(base=payload["config"]).env)
    scores = run_policy(env, agent_from_checkpoint(payload, env, path).act, 2, 10_000)
    env.close()
    stated = f"{scores.mean():,.2f} ± {scores.mean(axis=1).std():,.2f}"
    assert stated in page.text and stated in markdown
    assert f"min {scores.min():,.2f} · median {np.median(scores):,.2f} · max {scores.max():,.2f}" in page.text
    assert "checkpoints/episode_000002.pt (after episode 2), over 2 episodes × 2 environments" in page.text
    # Pendulum's renderer needs pygame, absent here: the page says so instead of failing.
    assert "No video: env.id: Pendulum-v1 needs a package that is missing: pygame" in page.text


def test_hyperparameters_are_every_field_and_the_changed_ones_stand_out(pendulum, runs):
    page, markdown, _ = pendulum
    docs = field_docs()
    rows = [(cls, cells) for cls, cells in page.rows if cells and cells[0].split(" ")[0] in docs]
    assert [cells[0].split(" ")[0] for _, cells in rows] == list(docs)
    assert all(cells[3] == docs[cells[0].split(" ")[0]] for _, cells in rows)
    changed = config_changes(Config(), load_config(None, PENDULUM))
    assert {cells[0].split(" ")[0] for cls, cells in rows if cls == "differs"} == set(changed)
    assert f"{len(changed)} of {len(docs)} differ from the built-in defaults" in page.text
    tau = next(cells for _, cells in rows if cells[0] == "agent.tau")
    assert tau[1:3] == ["0.005", "0.005"]
    # The twin's table: a doc with pipes in it ("|TD error|") still makes exactly four cells.
    line = next(l for l in markdown.splitlines() if l.startswith("| `replay.alpha`"))
    assert len(re.split(r"(?<!\\)\|", line)) == 6 and "\\|TD error\\|" in line


def test_architectures_are_the_real_networks_counted_by_hand(pendulum):
    page, _, _ = pendulum
    # PENDULUM: 3 observations, 1 action, hidden [16, 16], layer norm (the default), action at layer 1.
    # Actor: 3*16+16 = 64, norm 2*16 = 32, 16*16+16 = 272, norm 32, 16*1+1 = 17: 417.
    # Critic: state 64 + norm 32; head (16+1)*16+16 = 288, norm 32, 17: 433.
    assert "Actor: 417 parameters" in page.text and "Critic: 433 parameters" in page.text
    layers = [(cells[0], cells[1], cells[3]) for _, cells in page.rows if len(cells) == 4 and cells[0][:5] in ("body.", "state", "head.")]
    assert layers == [
        ("body.0", "Linear", "64"), ("body.1", "LayerNorm", "32"), ("body.2", "LeakyReLU", "0"),
        ("body.3", "Linear", "272"), ("body.4", "LayerNorm", "32"), ("body.5", "LeakyReLU", "0"),
        ("body.6", "Linear", "17"), ("body.7", "Tanh", "0"),
        ("state_layer.0", "Linear", "64"), ("state_layer.1", "LayerNorm", "32"), ("state_layer.2", "LeakyReLU", "0"),
        ("head.0", "Linear", "288"), ("head.1", "LayerNorm", "32"), ("head.2", "LeakyReLU", "0"), ("head.3", "Linear", "17")]


def test_reacher_page_has_the_video_the_q_ceiling_and_arms(reacher):
    page, markdown, html = reacher
    gifs = [data_uri(src) for src in page.images if src.startswith("data:image/gif")]
    assert len(gifs) == 1
    video = decode(gifs[0])
    assert video.n_frames == FRAMES and video.width <= report.VIDEO_WIDTH
    assert (html.parent / "report_files" / "video.gif").read_bytes() == gifs[0]
    assert "r max / (1 − γ) = 0.04 / (1 − 0.99) = 4.00" in page.text
    assert "over 1 episode × 2 arms" in page.text and "ddpg/Reacher-v0 · 2 arms" in page.text


def test_a_solved_run_says_when(tmp_path):
    run = tmp_path / "solved"
    # Any Pendulum episode scores above -2000, so a 1-episode window reaches it at episode 1.
    Trainer(load_config(None, [*PENDULUM, "train.episodes=1", "train.target_score=-2000", "train.window=1"]), run).train(progress=False)
    page, markdown, _ = make_report(run, "--eval-episodes", "1", "--no-video")
    assert "solved at episode 1" in page.text and "Solved episode 1" in page.text
    assert "# solved: solved at episode 1" in markdown and "No video: not asked for (--no-video)" in page.text


def test_a_run_without_checkpoints_is_reported_without_evaluation(runs, tmp_path, capsys):
    run = copy(runs / "pendulum", tmp_path)
    shutil.rmtree(run / "checkpoints")
    page, markdown, _ = make_report(run)
    assert set(page.sections) == SECTIONS
    assert "No evaluation: the run has no checkpoint yet." in page.text
    assert "No evaluation: the run has no checkpoint yet." in markdown
    assert "No video: no checkpoint to play." in page.text
    assert "no evaluation: the run has no checkpoint yet" in capsys.readouterr().out


def test_damaged_checkpoints_are_skipped_or_named(runs, tmp_path):
    run = copy(runs / "pendulum", tmp_path)
    newest, oldest = sorted((run / "checkpoints").glob("episode_*.pt"), reverse=True)
    flip_bytes_in_largest_tensor(newest)
    page, _, _ = make_report(run, "--eval-episodes", "1")
    assert "checkpoints/episode_000001.pt (after episode 1)" in page.text
    assert re.search(r"skipping .*episode_000002.pt: .*data/\d+ does not match its checksum", page.text)
    flip_bytes_in_largest_tensor(oldest)
    page, _, _ = make_report(run, "--eval-episodes", "1")
    assert "No evaluation:" in page.text and "no usable checkpoint" in page.text


def test_a_run_still_going_is_a_marked_partial_report(runs, tmp_path, capsys):
    run = copy(runs / "pendulum", tmp_path)
    (run / "outcome.json").unlink()  # as while it trains
    page, _, _ = make_report(run, "--eval-episodes", "1")
    assert "Partial report" not in page.text  # not running: a run that was killed
    lock = RunLock(run)  # the training process
    try:
        page, markdown, html = make_report(run, "--eval-episodes", "1")
    finally:
        lock.release()
    assert html.read_text().count('id="partial"') == 1 and "[partial]" in html.read_text().split("</title>")[0]
    assert "Partial report: this run is still training. Its figures stop at episode 2" in page.text
    assert "Outcome still training" in page.text
    assert "**Partial report: this run is still training.**" in markdown
    assert "partial report: the run is still training" in capsys.readouterr().out


def test_where_the_files_go(runs, tmp_path):
    page, _, html = make_report(runs / "pendulum", "--no-video", out=tmp_path / "out" / "write-up.html")
    assert sorted(p.name for p in html.parent.iterdir()) == ["write-up.html", "write-up.md", "write-up_files"]
    assert sorted(p.name for p in (html.parent / "write-up_files").iterdir()) == [
        "diagnostics.png", "evaluation.png", "scores.png"]


def test_the_rest_of_ddpg_does_not_import_jinja2():
    code = "import sys, ddpg.cli, ddpg.trainer, ddpg.compare, ddpg.plot; print('jinja2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_without_jinja2_one_line_says_how_to_get_it(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jinja2", None)
    assert main(["report", str(runs / "pendulum")]) == 2
    assert capsys.readouterr().err == "ddpg report: error: ddpg report needs Jinja2: pip install 'ddpg[report]'\n"


# -- several runs --------------------------------------------------------------------------------------
def test_several_runs_are_compared_as_ddpg_compare_does(runs, tmp_path):
    sweep = tmp_path / "sweep"
    for seed in (1, 2):
        Trainer(load_config(None, [*PENDULUM, f"train.seed={seed}"]), sweep / f"seed{seed}").train(progress=False)
    shutil.copytree(runs / "pendulum", sweep / "tau", ignore=shutil.ignore_patterns("report*"))
    (sweep / "tau" / "config.json").write_text((sweep / "tau" / "config.json").read_text().replace('"tau": 0.005', '"tau": 0.01'))
    page, markdown, html = make_report(sweep)
    assert html == sweep / "report.html"
    _, cells, _ = table(summarize(group_runs(load_runs([sweep]))))
    assert [c for _, c in page.rows[:len(cells)]] == [list(row) for row in cells]
    assert sorted(c[1] for c in cells[1:]) == ["agent.tau=0.005", "agent.tau=0.01"]
    assert sum(f"`{sweep / name}`" in markdown for name in ("seed1", "seed2", "tau")) == 3
    assert len(page.images) == 1 and decode(data_uri(page.images[0]))
    assert not [link for link in page.links if not link.startswith(("data:", "#"))]


# -- a real browser ------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Run after the page has loaded: the count of images, and of those that did not render.
CHECK = ("<script>addEventListener('load', () => { const broken = [...document.images].filter("
         "i => !(i.complete && i.naturalWidth > 0)); document.body.insertAdjacentHTML('beforeend', "
         "`<p id=\"checked\">${document.images.length} ${broken.length}</p>`); });</script>")


def chromium(*args: str, profile: Path) -> str:
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def images_rendered(html: str, folder: Path) -> tuple[int, int]:
    """(images, broken images) of the page as Chromium renders it."""
    page = folder / "checked.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri(), profile=folder / "profile")
    found = re.search(r'<p id="checked">(\d+) (\d+)</p>', dom)
    assert found, dom[-500:]
    return int(found[1]), int(found[2])


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_a_real_browser_renders_every_image(reacher, tmp_path):
    page, _, html = reacher
    text = html.read_text()
    # The check can fail: an image that does not decode is counted as broken.
    assert images_rendered(text.replace("</main>", '<img src="data:image/png;base64,AAAA"></main>'), tmp_path) == (
        len(page.images) + 1, 1)
    assert images_rendered(text, tmp_path) == (len(page.images), 0)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium("--window-size=1200,4000", f"--screenshot={shot}", html.as_uri(), profile=tmp_path / "profile")
    assert decode(shot.read_bytes()).size == (1200, 4000)
    print(f"screenshot of the report: {shot}")


HOSTILE = "x`<img src=x onerror=alert(1)>` [click](javascript:alert(2)) <script>alert(3)<script> *b*"  # no /: one folder


def test_the_markdown_twin_lets_no_html_markup_or_link_of_the_users_through(runs, tmp_path):
    """Rendered as GitHub would (CommonMark, tables, raw HTML let through), the twin of a run whose name
    is hostile shows the name as text and code, whole: no tag, link or emphasis comes of it."""
    run = tmp_path / HOSTILE
    shutil.copytree(runs / "pendulum", run, ignore=shutil.ignore_patterns("report*"))
    _, markdown, _ = make_report(run, "--eval-episodes", "1", "--no-video", out=tmp_path / "r.html")
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    page = Page(rendered)
    assert {"script", "em"}.isdisjoint(page.tags), page.tags
    assert all(src.startswith("r_files/") for src in page.images) and page.images
    assert not [href for href in page.links if href.startswith("javascript")]
    codes = re.findall(r"<code>(.*?)</code>", rendered)
    assert any(html.unescape(c).endswith(HOSTILE) for c in codes)  # one code span, not closed by the name's backticks
    assert HOSTILE in html.unescape(page.text)  # the name as text, in the title
