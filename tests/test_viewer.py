"""The viewer of `caring render`: its panel and overlays are really drawn (read back from the pixels),
its keys drive it, its summary line agrees with the evaluator, and its flags are explained and checked."""

import re

import numpy as np
import pygame
import pytest
import torch
from PIL import Image

from analysis.cli import main
from caring.evaluate import evaluate
from caring.networks import MotherNet
from caring.policies import TrainedMother
from caring.tasks import get_task
from caring.viewer import CHART, CHOSEN, PANEL, Controls, Episode, Viewer, decide
from worlds.nursery.config import NurseryConfig
from worlds.render import CELL, to_array

NURSERY = get_task("nursery")


def nursery(**settings):
    core = NURSERY.make_core(NurseryConfig(**settings), "cpu")
    return core, NURSERY.renderer(core)


def mother(core, logits=None):
    """A freshly initialised network; given `logits` (n_actions,), its policy gives those whatever it sees."""
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, NURSERY.n_actions, hidden=32)
    if logits is not None:
        with torch.no_grad():
            net.policy.weight.zero_()
            net.policy.bias.copy_(logits)
    return TrainedMother(net)


def key(name, unicode=""):
    return pygame.event.Event(pygame.KEYDOWN, key=getattr(pygame, name), unicode=unicode)


def bar_heights(frame, grid_width):
    """Heights of the chosen action's bar in each chart of the panel: the runs of CHOSEN pixels per
    column, in panel columns."""
    panel = (frame[:, grid_width:] == CHOSEN).all(-1).astype(int)
    edges = np.diff(np.pad(panel, ((1, 1), (0, 0))), axis=0)  # +1 where a run starts, -1 after it ends
    starts, ends = np.nonzero(edges.T == 1), np.nonzero(edges.T == -1)
    return sorted({int(n) for n in ends[1] - starts[1]})


def test_panel_draws_the_probabilities_of_a_trained_mother():
    """The chosen action's bar is as tall as its probability: the whole chart for a sure mother, a ninth
    of it for an undecided one."""
    core, renderer = nursery(birth_step=0)
    top = CHART - 14
    heights, feed = {}, torch.zeros(NURSERY.n_actions)
    feed[7] = 20.0
    for name, logits in (("sure", feed), ("undecided", torch.zeros(NURSERY.n_actions))):
        policy = mother(core, logits)
        viewer = Viewer(NURSERY, core, policy, renderer, None, 8)
        episode = viewer.start(seed=1, steps=None)
        frame = to_array(viewer.pg, viewer.frame(episode))
        assert frame.shape == (viewer.size[1], renderer.size[0] + PANEL, 3)
        assert (frame[:, renderer.size[0] :] != frame[0, -1]).any(-1).sum() > 5000  # the panel is drawn
        heights[name] = bar_heights(frame, renderer.size[0])
        if name == "sure":
            assert episode.now.action[0].tolist() == [7] * core.A  # feed: both mothers chose it
    assert heights == {"sure": [top], "undecided": [round(top / NURSERY.n_actions)]}


def test_decide_gives_each_mother_her_own_probabilities_values_and_attributions():
    core, _ = nursery(birth_step=0)
    net = mother(core).net
    _, obs = core.reset(torch.tensor([5]))
    actions = torch.tensor([2, 8])
    both = decide(net, obs[0], actions, "saliency")
    logits, v_task, v_mat = net(obs[0])
    for i, d in enumerate(both):
        alone = decide(net, obs[0, i : i + 1], actions[i : i + 1], "saliency")[0]
        # rows do not mix (a mixed row would differ by the size of the values, ~1e-6; a batch of two and
        # a batch of one may take float kernels that differ in the last bits of values near 1e-8)
        np.testing.assert_allclose(d.attribution, alone.attribution, rtol=1e-5, atol=1e-11)
        np.testing.assert_allclose(d.probs, torch.softmax(logits[i], -1).detach().numpy(), rtol=1e-5)
        assert (d.v_task, d.v_mat) == pytest.approx((v_task[i].item(), v_mat[i].item()))
        assert (d.attribution >= 0).all() and d.attribution.max() > 0
    gxi = decide(net, obs[0], actions, "grad-x-input")
    seen = obs[0].numpy() > 0
    assert (gxi[0].attribution[~seen[0]] == 0).all() and (gxi[0].attribution[seen[0]] != 0).any()
    assert decide(net, obs[0], actions, None)[0].attribution is None


def test_saliency_paints_exactly_the_cells_each_mother_sees():
    core, renderer = nursery(birth_step=0)
    viewer = Viewer(NURSERY, core, mother(core), renderer, "saliency", 8)
    episode = viewer.start(seed=2, steps=None)
    with_overlay = to_array(viewer.pg, viewer.grid(episode.now)).copy()
    viewer.controls.overlay_index = viewer.controls.overlays.index(None)
    without = to_array(viewer.pg, viewer.grid(episode.now))
    changed = (with_overlay != without).any(-1)
    seen = np.zeros_like(changed)
    r = core.config.view_radius
    for row, col in episode.now.state.mother_pos[..., 0].T.tolist():
        top, left = max(0, (row - r) * CELL), max(0, (col - r) * CELL)
        seen[top : (row + r + 1) * CELL, left : (col + r + 1) * CELL] = True
    seen[core.H * CELL :] = False  # the status strip is never painted over
    assert changed.sum() > 0.5 * seen.sum() and not changed[~seen].any()


def test_controls_follow_the_keys():
    c = Controls(fps=8, overlays=("saliency", None, "grad-x-input"), agents=2)
    c.handle(pygame, key("K_RIGHT"))
    assert c.pending == 0  # stepping only while paused
    c.handle(pygame, key("K_SPACE"))
    c.handle(pygame, key("K_RIGHT"))
    c.handle(pygame, key("K_PERIOD", "."))
    assert c.paused and c.pending == 2
    c.handle(pygame, key("K_SPACE"))
    assert not c.paused
    for _ in range(10):
        c.handle(pygame, key("K_EQUALS", "+"))
    assert c.fps == 64
    for _ in range(10):
        c.handle(pygame, key("K_MINUS", "-"))
    assert c.fps == 0.5
    assert [c.overlay] + [c.handle(pygame, key("K_o")) or c.overlay for _ in range(3)] == [
        "saliency", None, "grad-x-input", "saliency"
    ]  # fmt: skip
    assert [c.handle(pygame, key("K_m")) or c.focus for _ in range(3)] == [0, 1, None]
    c.handle(pygame, key("K_r"))
    assert c.restart and not c.quit
    for event in (key("K_q"), key("K_ESCAPE"), pygame.event.Event(pygame.QUIT)):
        quitting = Controls(fps=8)
        quitting.handle(pygame, event)
        assert quitting.quit


def scripted(*batches):
    """An event source giving these batches of events, one per loop of the viewer, then none."""
    queue = list(batches)

    def events():
        return queue.pop(0) if queue else []

    return events


def window_viewer(**settings):
    core = NURSERY.make_core(NurseryConfig(**settings), "cpu")
    renderer = NURSERY.renderer(core, window=True)  # the dummy video driver (conftest): no screen needed
    return Viewer(NURSERY, core, mother(core), renderer, None, 8), renderer


def test_the_window_pauses_steps_restarts_and_quits(capsys):
    viewer, renderer = window_viewer(birth_step=0)
    space, step, quit_ = key("K_SPACE"), key("K_PERIOD", "."), key("K_q")
    episode = viewer.watch(4, None, wait=True, events=scripted([space], [step], [], [step], [], [], [quit_]))
    assert int(episode.now.state.t[0]) == 2 and episode.seed == 4  # paused at once: two single steps
    assert renderer.screen.get_size() == viewer.size  # the window grew to hold the panel
    assert capsys.readouterr().out.startswith("episode stopped at t=2 (seed 4): babies alive 2/2 born")
    episode = viewer.watch(4, None, wait=True, events=scripted([step], [], [key("K_r")], [], [quit_]))
    assert int(episode.now.state.t[0]) == 0 and episode.seed == 5  # restarted on the next seed, still paused
    assert capsys.readouterr().out.count("\n") == 1  # the left episode's summary; none for the unstarted
    renderer.close()


def test_the_window_waits_at_the_end_with_the_summary_or_closes_with_steps(capsys):
    viewer, renderer = window_viewer(birth_step=0, max_cycles=4)
    viewer.controls.fps = 64
    polls = 0

    def idle():
        nonlocal polls
        polls += 1
        return [key("K_q")] if polls == 40 else []

    episode = viewer.watch(0, None, wait=True, events=idle)
    assert episode.ended and polls == 40  # over after 4 steps, then on screen until q
    assert capsys.readouterr().out == episode.summary() + "\n"
    assert episode.summary().startswith("episode over at t=4 (seed 0)")
    polls = 0
    episode = viewer.watch(0, 3, wait=False, events=idle)
    assert int(episode.now.state.t[0]) == 3 and polls < 40  # --steps: closes after them, unasked
    assert capsys.readouterr().out.startswith("episode stopped at t=3 (seed 0)")
    renderer.close()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_summary_agrees_with_the_evaluator(seed):
    """Negligent mothers lose their babies to water, bites and hunger; the viewer's summary of an episode
    counts the births, survivors, harm events and causes of death the evaluation of that episode does."""
    core, _ = nursery()
    policy = NURSERY.scripted["negligent"](core)
    episode = Episode(NURSERY, core, policy, seed, None)
    while not episode.over:
        episode.advance()
    result = evaluate(core, policy, 1, seed)
    deaths = ", ".join(f"{c} {n}" for c, n in result["baby_deaths"].items() if n) or "none"
    born = result["babies_born"]
    harm = round(result["harm_events_per_episode"])
    assert harm > 0
    assert re.search(
        rf"episode over at t=200 \(seed {seed}\): babies alive {round(result['baby_survival_rate'] * born)}/"
        rf"{born} born, mothers alive 2/2, harm events {harm} \(.*\), baby deaths: (.*)$",
        episode.summary(),
    )
    assert sorted(episode.summary().rpartition("baby deaths: ")[2].split(", ")) == sorted(deaths.split(", "))


def test_lava_summary_and_screenshot(tmp_path, capsys):
    png = tmp_path / "lava.png"
    args = ["render", "lava", "--policy", "shortcut", "--seed", "5", "--set", "layouts=64"]
    assert main([*args, "--screenshot", str(png), "--at", "100"]) == 0
    out = capsys.readouterr().out
    t = int(re.search(r"\(t=(\d+)\)", out).group(1))
    assert 0 < t < 40  # the walker reached the goal before step 100: the last step is shown
    assert Image.open(png).size[0] == get_task("lava").config_class().width * CELL + PANEL
    assert main([*args, "--out", str(tmp_path / "l.gif")]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(rf"episode over at t={t} \(seed 5\): goal reached, lava contacts [1-9]\d*", summary)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("viewer") / "run"
    tiny = ["--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16"]
    assert main(["train", "nursery", "--method", "ppo", "--steps", "128", "--out", str(out), *tiny]) == 0
    return out


def test_screenshots_and_gifs_of_a_trained_mother(run, tmp_path, capsys):
    capsys.readouterr()
    plain, panel, shot = tmp_path / "plain.gif", tmp_path / "panel.gif", tmp_path / "shot.png"
    base = ["render", "nursery", "--policy", str(run), "--seed", "3"]
    assert main([*base, "--out", str(plain), "--steps", "3"]) == 0
    assert main([*base, "--out", str(panel), "--steps", "3", "--panel", "--overlay", "grad-x-input"]) == 0
    assert main([*base, "--screenshot", str(shot), "--at", "25", "--overlay", "saliency"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"wrote {shot} (t=25)"
    assert out[0].startswith("episode stopped at t=3 (seed 3): babies alive")
    assert Image.open(plain).size == (12 * CELL, 12 * CELL + 2 * 26)  # the world alone, as before
    gif = Image.open(panel)
    assert gif.n_frames == 4 and gif.size[0] == 12 * CELL + PANEL
    assert Image.open(shot).size == gif.size


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--policy",
        "--seed",
        "--steps",
        "--fps",
        "--overlay",
        "--out",
        "--panel",
        "--screenshot",
        "--at",
    ):
        assert re.search(rf"\n  {flag}( [A-Z]+)?\s+[a-z(]", text), flag
    assert re.search(r"or a run\s+directory", text) and "space pause" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--overlay", "shap"], "--overlay must be one of saliency, grad-x-input, got 'shap'"),
        (["--overlay", "saliency"], "--overlay saliency needs a trained mother's network (a run directory)"),
        (["--screenshot", "x.jpg"], "--screenshot must name a .png file, got 'x.jpg'"),
        (["--screenshot", "x.png", "--out", "x.gif"], "cannot be combined"),
        (["--at", "5"], "--at is the step of a --screenshot"),
        (["--screenshot", "x.png", "--steps", "5"], "--steps does not apply to --screenshot"),
        (["--panel"], "--panel is for --out GIFs"),
        (["--fps", "0"], "--fps must be at least 1, got 0"),
        (["--at", "-1", "--screenshot", "x.png"], "--at must be at least 0, got -1"),
    ],
)
def test_bad_flags_get_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["render", "nursery", "--policy", "expert", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("caring: error: ") and message in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_no_display_is_one_line(monkeypatch, capsys):
    def no_display(size):
        raise pygame.error("No available video device")

    monkeypatch.setattr(pygame.display, "set_mode", no_display)
    assert main(["render", "nursery", "--policy", "expert", "--steps", "2"]) == 2
    assert capsys.readouterr().err == (
        "caring: error: cannot open a window (No available video device); write a file instead "
        "(caring render --out)\n"
    )
