"""What people watch: each agent's per-step view record, the self-contained HTML episode pages
(checked in headless Chromium where it is installed), GIF videos, `frugal watch` under a virtual
display, and the compare report's links to the pages."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from test_agent_contract import FAST

import frugal
from frugal.api import build_config
from frugal.cli import main
from frugal.envs import make_env
from frugal.evaluation import GIF_FRAME_SKIP
from frugal.nets.distributions import twohot_mean
from frugal.runs import viewer_pages
from frugal.viewer.pages import read_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
XVFB = shutil.which("Xvfb")
N = 2  # envs acting at once: records have one row per env


def _agent(algo: str, env_id: str, *overrides: str):
    config = build_config(algo, env_id, overrides=[*FAST[algo], *overrides])
    env = make_env(config.env, N)
    obs = env.reset(0)
    env.close()
    package = frugal.agents.agent_module(algo)
    agent = package.Agent(config.agent, env.spec, N, torch.device("cpu"), seed=0)
    return agent, obs, config


def _act(agent, obs):
    state = agent.initial_act_state(N)
    first = np.ones(N, dtype=bool)
    rng = np.random.default_rng(0)
    actions, state = agent.act(obs, state, first, explore=False, rng=rng)
    return actions, state, agent.view_record()


# ------------------------------------------------------------------------ view records


def test_dqn_record_holds_the_networks_q_values_of_the_observation():
    agent, obs, _ = _agent("dqn", "gym/CartPole-v1")
    assert agent.view_record() is None  # nothing acted yet
    actions, _, record = _act(agent, obs)
    with torch.no_grad():
        expected = agent.q(torch.as_tensor(obs)).numpy()
    assert set(record) == {"q_values"}
    np.testing.assert_array_equal(record["q_values"], expected)
    np.testing.assert_array_equal(actions, expected.argmax(1))  # greedy (eval_eps 0)


def test_ppo_record_holds_the_policy_and_value_of_the_observation():
    agent, obs, _ = _agent("ppo", "gym/CartPole-v1")
    actions, _, record = _act(agent, obs)
    x = torch.as_tensor(obs)
    with torch.no_grad():
        logits, value = agent.net(x)
    assert set(record) == {"action_probs", "value"}
    assert record["action_probs"].shape == (N, 2)
    np.testing.assert_allclose(record["action_probs"].sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(record["action_probs"], logits.softmax(-1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(record["value"], value.numpy())
    np.testing.assert_array_equal(actions, record["action_probs"].argmax(1))


def test_ppo_continuous_record_holds_the_gaussian_it_acts_on():
    agent, obs, _ = _agent("ppo", "gym/Pendulum-v1")
    actions, _, record = _act(agent, obs)
    assert set(record) == {"action_mean", "action_std", "value"}
    np.testing.assert_array_equal(record["action_mean"], actions)  # greedy plays the mean
    std = agent.net.log_std.detach().exp().numpy()
    np.testing.assert_allclose(record["action_std"], np.broadcast_to(std, (N, 1)), rtol=1e-6)
    assert record["value"].shape == (N,)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_efficientzero_record_holds_the_search_statistics(version):
    agent, obs, config = _agent("efficientzero", "gym/CartPole-v1", f"agent.version={version}")
    actions, _, record = _act(agent, obs)
    sims = config.agent.num_simulations
    assert set(record) == {"root_value", "visit_counts", "improved_policy", "predicted_reward"}
    assert record["visit_counts"].shape == (N, 2)
    np.testing.assert_array_equal(record["visit_counts"].sum(1), [sims] * N)
    np.testing.assert_allclose(record["improved_policy"].sum(1), 1.0, rtol=1e-5)
    if version == "v1":  # pUCT: the improved policy is the visit distribution, played greedily
        np.testing.assert_allclose(record["improved_policy"], record["visit_counts"] / sims)
        visits = record["visit_counts"]  # the most visited (ties drawn at random)
        np.testing.assert_array_equal(visits[np.arange(N), actions], visits.max(1))
    # the reward head's prediction for the action played, from the root's latent
    net = agent.net
    with torch.no_grad():
        s = net.represent(torch.as_tensor(obs))
        _, rlog, _ = net.dynamics(s, torch.as_tensor(actions), net.initial_reward_state(N, "cpu"))
    expected = agent.reward_support.decode(rlog.float()).numpy()
    np.testing.assert_allclose(record["predicted_reward"], expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(record["root_value"]).all() and record["root_value"].shape == (N,)


def test_efficientzero_sampled_search_record_holds_the_candidates():
    agent, obs, config = _agent("efficientzero", "gym/Pendulum-v1")
    actions, _, record = _act(agent, obs)
    k = config.agent.num_sampled_actions
    cand = record["candidate_actions"]
    assert cand.shape == (N, k, 1)
    np.testing.assert_array_equal(record["visit_counts"].sum(1), [config.agent.num_simulations] * N)
    np.testing.assert_allclose(record["improved_policy"].sum(1), 1.0, rtol=1e-5)
    # the action played is one of the candidates, mapped from [-1, 1] to the env's range
    low, high = agent.spec.action_low, agent.spec.action_high
    env_cand = low + (cand + 1.0) * 0.5 * (high - low)
    assert all(np.isclose(env_cand[i], actions[i], atol=1e-5).all(-1).any() for i in range(N))


def test_dreamer_record_holds_the_models_expectations_at_the_posterior():
    agent, obs, _ = _agent("dreamerv3", "gym/CartPole-v1")
    _, state, record = _act(agent, obs)
    assert set(record) == {"predicted_reward", "continue_prob", "value"}
    feat = torch.cat([state["deter"], state["stoch"]], -1)
    with torch.no_grad():
        value = twohot_mean(agent.critic(feat).float(), agent.buckets).numpy()
        cont = torch.sigmoid(agent.wm.cont(feat).float().squeeze(-1)).numpy()
    np.testing.assert_allclose(record["value"], value, rtol=1e-6)
    np.testing.assert_allclose(record["continue_prob"], cont, rtol=1e-6)
    assert ((record["continue_prob"] >= 0) & (record["continue_prob"] <= 1)).all()
    assert record["predicted_reward"].shape == (N,)


# --------------------------------------------------------------------- pages, GIF, watch


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("viewer") / "dqn"
    overrides = [*FAST["dqn"], "run.progress=false", "run.eval_episodes=1", "run.eval_every=0"]
    frugal.train("dqn", "gym/CartPole-v1", steps=128, seed=1, run_dir=path, overrides=overrides)
    return path


@pytest.fixture(scope="module")
def pages(run_dir) -> list[Path]:
    result = frugal.evaluate(run_dir, episodes=2, viewer=True)
    paths = [Path(p) for p in result["viewer"]]
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    return paths


def _episode(page: Path) -> dict:
    return read_page(page)


def test_a_page_holds_every_step_of_its_episode(pages, run_dir):
    episode = _episode(pages[0])
    steps = episode["steps"]
    meta = episode["meta"]
    assert meta["length"] == len(steps) == len(episode["frames"]) > 0
    assert meta["algo"] == "dqn" and meta["env"] == "gym/CartPole-v1"
    assert all(s["reward"] == 1.0 for s in steps)  # CartPole
    assert [s["return"] for s in steps] == list(range(1, len(steps) + 1))
    for s in steps:
        q = s["record"]["q_values"]
        assert len(q) == 2 and s["action"] == int(np.argmax(q))
    assert all(f.startswith("data:image/png;base64,") for f in episode["frames"])
    assert "http://" not in pages[0].read_text().replace("http://www.w3.org/2000/svg", "")
    assert viewer_pages(run_dir) == sorted(pages)


class _Elements(HTMLParser):
    """Attributes and text of the elements that have an id, from a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.bars: dict[str, list[dict]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.by_id[attrs["id"]] = {**attrs, "text": ""}
        if tag == "rect":
            owner = next((i for i in reversed(self._open) if i and i.startswith("rec-")), None)
            self.bars.setdefault(owner, []).append(attrs)
        if tag not in ("img", "input", "line", "rect", "meta", "br", "option"):
            self._open.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag not in ("img", "input", "line", "rect", "meta", "br", "option") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in reversed(self._open):
            if element_id:
                self.by_id[element_id]["text"] += data
                break


def _dump_dom(page: Path, fragment: str = "") -> _Elements:
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
            page.resolve().as_uri() + fragment,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "<body" in out.stdout, out.stderr[-2000:]
    parser = _Elements()
    parser.feed(out.stdout)
    return parser


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_page_in_chromium_shows_step_k_when_the_slider_is_at_k(pages):
    episode = _episode(pages[0])
    k = len(episode["steps"]) // 2
    dom = _dump_dom(pages[0], f"#step={k}")
    step = episode["steps"][k]
    assert dom.by_id["slider"]["value"] == str(k)
    assert dom.by_id["step"]["text"] == str(k)
    assert dom.by_id["frame"]["src"] == episode["frames"][k]
    assert dom.by_id["frame"]["src"] != episode["frames"][0]
    assert dom.by_id["action"]["text"] == str(step["action"])
    assert float(dom.by_id["return"]["text"]) == step["return"] == k + 1
    bars = dom.bars["rec-q_values"]
    assert [float(b["data-value"]) for b in bars] == step["record"]["q_values"]
    assert [b["class"] for b in bars].index("bar taken") == step["action"]
    first = _dump_dom(pages[0])  # no fragment: step 0
    assert first.by_id["step"]["text"] == "0"
    assert first.by_id["frame"]["src"] == episode["frames"][0]


def test_gif_video_keeps_every_third_frame_of_the_best_episode(run_dir, tmp_path):
    from PIL import Image

    result = frugal.evaluate(run_dir, episodes=1, video=tmp_path / "best.gif", video_format="gif")
    length = int(result["eval/length_mean"])
    kept = math.ceil(length / GIF_FRAME_SKIP)
    with Image.open(tmp_path / "best.gif") as gif:
        assert gif.format == "GIF" and gif.size == (600, 400)  # CartPole's frame
        durations = []
        for k in range(gif.n_frames):
            gif.seek(k)
            durations.append(gif.info["duration"])
    # frames of 100 ms; the GIF encoder stores a run of identical frames once, for their sum
    assert sum(durations) == kept * 1000 * GIF_FRAME_SKIP // 30
    assert all(d % 100 == 0 for d in durations)
    assert kept - 3 <= len(durations) <= kept, (len(durations), kept)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--video", "--format", "avi"], "invalid choice: 'avi'"),
        (["--format", "gif"], "--format gif is the video's format; add --video"),
    ],
)
def test_bad_video_format_is_one_line(run_dir, argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(run_dir), *argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_viewer_on_a_run_without_checkpoint_is_one_line(run_dir, tmp_path, capsys):
    shutil.copy(run_dir / "config.yaml", tmp_path / "config.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path), "--viewer"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "viewer").exists()


def test_watch_without_a_display_exits_2_pointing_to_the_viewer(run_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run(
        [sys.executable, "-m", "frugal", "watch", str(run_dir)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "no display" in out.stderr, out.stderr
    assert f"frugal eval {run_dir} --viewer" in out.stderr


def _xwd_pixels(path: Path) -> np.ndarray | None:
    """The screen [H, W, 3] of an Xvfb frame-buffer file (XWD, 24-bit TrueColor, 32 bpp)."""
    raw = path.read_bytes()
    if len(raw) < 100:
        return None
    header = np.frombuffer(raw[:100], dtype=">u4")
    header_size, width, height = int(header[0]), int(header[4]), int(header[5])
    bits_per_pixel, bytes_per_line, ncolors = int(header[11]), int(header[12]), int(header[19])
    assert bits_per_pixel == 32, "expected a 32-bit frame buffer"
    start = header_size + 12 * ncolors
    pixels = np.frombuffer(raw[start : start + bytes_per_line * height], dtype=np.uint8)
    rows = pixels.reshape(height, bytes_per_line)[:, : 4 * width].reshape(height, width, 4)
    return rows[..., 2::-1] if header[7] == 0 else rows[..., 1:]  # LSB first: B G R x


@pytest.mark.skipif(XVFB is None, reason="Xvfb is not installed")
def test_watch_shows_frames_on_a_virtual_display(run_dir, tmp_path):
    display = f":{90 + os.getpid() % 400}"
    xvfb = subprocess.Popen(
        [XVFB, display, "-screen", "0", "800x600x24", "-fbdir", str(tmp_path), "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        screen = tmp_path / "Xvfb_screen0"
        for _ in range(100):
            if screen.exists():
                break
            time.sleep(0.05)
        before = _xwd_pixels(screen)
        env = {**os.environ, "DISPLAY": display}
        env.pop("SDL_VIDEODRIVER", None)
        watch = subprocess.Popen(
            [sys.executable, "-m", "frugal", "watch", str(run_dir), "--speed", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        captured = None
        deadline = time.monotonic() + 120
        while watch.poll() is None and time.monotonic() < deadline:
            pixels = _xwd_pixels(screen)
            if pixels is not None and (pixels == 255).all(-1).sum() > 100_000:
                captured = pixels.copy()
                break
            time.sleep(0.05)
        out, err = watch.communicate(timeout=120)
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=30)
    assert watch.returncode == 0, err
    assert json.loads(out)["eval/episodes"] == 1
    assert captured is not None, "no CartPole frame (a white 600x400 window) was seen"
    assert before is None or not (before == 255).all(-1).any()
    white = (captured == 255).all(-1)
    rows, cols = np.nonzero(white)
    assert np.ptp(rows) + 1 == 400 and np.ptp(cols) + 1 == 600  # the frame's size, as drawn
    assert (~white[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]).any()  # the cart


def test_compare_report_links_each_runs_pages(run_dir, pages, tmp_path):
    result = frugal.compare([run_dir], out=tmp_path / "report")
    text = result.report.read_text()
    assert "## Episode viewer" in text
    for page in pages:
        link = os.path.relpath(page, tmp_path / "report")
        assert f"]({link})" in text
        assert (tmp_path / "report" / link).resolve() == page.resolve()
