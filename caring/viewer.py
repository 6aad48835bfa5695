"""The viewer of `caring render`: a world's frame with a side panel that shows what the researcher wants
to see and the mother cannot (her baby's hunger and health), the action each mother takes and, for a
trained mother, her action probabilities, her two critics' values and an attribution heat map over the
cells she sees. In a window it is driven by keys (pause, step, speed, overlay, next seed, quit) and
waits at the episode's end with its summary; the same frames go to GIFs and screenshots.

A frame shows a state with the decision made in it: probabilities, values and attributions come from
the observation the mother acts on, and "action" is what she does next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from caring.episodes import MAX_SEED, Moment, moments
from caring.evaluate import death_causes
from caring.networks import MotherNet
from caring.policies import TrainedMother
from caring.protocols import Policy
from worlds.render import CELL, to_array

# Attributions of the chosen action's logit to each input, summed over a view cell's channels: the
# gradient's magnitude (where a change would move her choice most), or gradient x input (which of the
# things she sees push her towards it, red, or away from it, blue).
OVERLAYS = {
    "saliency": "|gradient| of the chosen action's logit per input (Simonyan et al. 2014)",
    "grad-x-input": "gradient x input of the chosen action's logit: red for it, blue against",
}
KEYS = (
    "space pause · right arrow or . step · +/- speed · o overlay",
    "m mother · r next seed · q or Esc quit",
)
SPEEDS = (0.5, 64.0)  # steps per second: slowest, fastest
PANEL = 300  # panel width, pixels
ROW = 16  # one line of the panel
CHART = 46  # the probability bars' height with their labels
BACKGROUND, TEXT, DIM = (32, 32, 38), (230, 230, 230), (150, 150, 160)
BAR, CHOSEN = (120, 160, 230), (255, 200, 60)


@dataclass(frozen=True)
class Decision:
    """What a trained mother's network makes of one observation: her action probabilities, her task
    and maternal critics' values, and (with an overlay) each input's attribution (obs_dim,)."""

    probs: np.ndarray
    v_task: float
    v_mat: float
    attribution: np.ndarray | None


def decide(net: MotherNet, obs: torch.Tensor, actions: torch.Tensor, overlay: str | None) -> list[Decision]:
    """One Decision per row of obs (A, obs_dim) uint8, for the actions (A,) taken. Rows are independent
    (no layer mixes them), so one backward pass gives every mother her own gradient."""
    x = obs.float().requires_grad_(overlay is not None)
    with torch.enable_grad():
        logits, v_task, v_mat = net(x)
        attribution = None
        if overlay is not None:
            (grad,) = torch.autograd.grad(logits.gather(1, actions[:, None].long()).sum(), x)
            attribution = (grad.abs() if overlay == "saliency" else grad * x.detach()).cpu().numpy()
    probs = torch.softmax(logits.detach(), -1).cpu().numpy()
    v_task, v_mat = v_task.detach().tolist(), v_mat.detach().tolist()
    return [
        Decision(probs[i], v_task[i], v_mat[i], None if attribution is None else attribution[i])
        for i in range(obs.shape[0])
    ]


@dataclass
class Controls:
    """The viewer's state under the keyboard: speed, pause, single steps asked for, the overlay shown
    and whose, and requests to restart or quit."""

    fps: float
    overlays: tuple[str | None, ...] = (None,)  # what `o` cycles through; the first is on at the start
    agents: int = 1
    paused: bool = False
    pending: int = 0  # single steps asked for while paused
    overlay_index: int = 0
    focus: int | None = None  # the agent whose attribution is shown; None: every agent's
    restart: bool = False
    quit: bool = False

    @property
    def overlay(self) -> str | None:
        return self.overlays[self.overlay_index]

    def handle(self, pg: Any, event: Any) -> None:
        """Apply one pygame event: the window's close button, or a key."""
        if event.type == pg.QUIT:
            self.quit = True
        if event.type != pg.KEYDOWN:
            return
        key, char = event.key, getattr(event, "unicode", "")
        if key in (pg.K_q, pg.K_ESCAPE):
            self.quit = True
        elif key == pg.K_SPACE:
            self.paused = not self.paused
        elif key in (pg.K_RIGHT, pg.K_PERIOD):
            if self.paused:  # while running, the next step comes anyway
                self.pending += 1
        elif key in (pg.K_PLUS, pg.K_KP_PLUS, pg.K_EQUALS) or char == "+":
            self.fps = min(SPEEDS[1], self.fps * 2)
        elif key in (pg.K_MINUS, pg.K_KP_MINUS) or char == "-":
            self.fps = max(SPEEDS[0], self.fps / 2)
        elif key == pg.K_r:
            self.restart = True
        elif key == pg.K_o:
            self.overlay_index = (self.overlay_index + 1) % len(self.overlays)
        elif key == pg.K_m:
            following = 0 if self.focus is None else self.focus + 1
            self.focus = following if following < self.agents else None


class Tally:
    """An episode's running summary: the task's own outcome (`Task.start_episode/track/outcome`) and, in
    worlds whose events report them (`baby_harm_<cause>`, `baby_died`), harm events and deaths by cause."""

    def __init__(self, task: Any, state: Any):
        self.task = task
        self.tally = task.start_episode(state)
        self.harms: dict[str, int] = {}
        self.deaths: dict[str, int] = {}

    def add(self, step: Any) -> None:
        self.tally = self.task.track(self.tally, step.before, step.out)
        events = step.out.events
        if "baby_died" not in events:  # a world without babies: its outcome says it all
            return
        for cause, died in death_causes(events).items():
            self.harms[cause] = self.harms.get(cause, 0) + int(events[f"baby_harm_{cause}"][0].sum())
            self.deaths[cause] = self.deaths.get(cause, 0) + int(died[0].sum())

    def line(self, state: Any, seed: int, ended: bool) -> str:
        """One line: how the episode went (so far, if it was stopped before its end)."""
        outcome = {k: float(v[0]) for k, v in self.task.outcome(self.tally, state).items()}
        parts = [self.task.describe_outcome(outcome)]
        if self.harms:
            causes = ", ".join(f"{c} {n}" for c, n in self.harms.items() if n)
            parts.append(f"harm events {sum(self.harms.values())}" + (f" ({causes})" if causes else ""))
            deaths = ", ".join(f"{c} {n}" for c, n in self.deaths.items() if n)
            parts.append(f"baby deaths: {deaths or 'none'}")
        head = f"episode {'over' if ended else 'stopped'} at t={int(state.t[0])} (seed {seed})"
        return f"{head}: {', '.join(parts)}"


class Episode:
    """One episode being watched: its current moment, stepped on demand, and its tally."""

    def __init__(self, task: Any, core: Any, policy: Policy, seed: int, steps: int | None):
        self.task, self.seed = task, seed
        self._moments: Iterator[Moment] = moments(task, core, policy, seed, steps)
        self.now = next(self._moments)
        self.tally = Tally(task, self.now.state)
        self.reported = False  # its summary was printed

    @property
    def over(self) -> bool:
        """At its last moment: the episode ended, or its steps ran out."""
        return self.now.action is None

    @property
    def ended(self) -> bool:
        """Over by the world's own rules, not by a step limit."""
        came_by = self.now.came_by
        return self.over and came_by is not None and bool(self.task.ended(came_by.after, came_by.out)[0])

    def advance(self) -> None:
        if not self.over:
            self.now = next(self._moments)
            self.tally.add(self.now.came_by)

    def summary(self) -> str:
        return self.tally.line(self.now.state, self.seed, self.ended)

    def report(self) -> None:
        """Print the summary line, once, if any step was taken."""
        if not self.reported and self.now.came_by is not None:
            print(self.summary(), flush=True)
            self.reported = True


class Viewer:
    """Draws an episode's moments with the world's renderer, the panel and the overlay, and runs the
    window."""

    def __init__(self, task: Any, core: Any, policy: Policy, renderer: Any, overlay: str | None, fps: float):
        self.task, self.core, self.policy, self.renderer = task, core, policy, renderer
        self.net = policy.net if isinstance(policy, TrainedMother) else None
        self.pg = pg = renderer.pg
        self.font, self.small = pg.font.Font(None, 18), pg.font.Font(None, 15)
        overlays = (overlay, *(o for o in (None, *OVERLAYS) if o != overlay)) if self.net else (None,)
        self.controls = Controls(fps, overlays, core.M)  # focus cycles through mothers, not orphans
        self._decided: tuple[Moment | None, str | None, list[Decision]] = (None, None, [])
        width, height = renderer.size
        self.size = (width + PANEL, max(height, self._panel_height()))
        self.surface = pg.Surface(self.size)

    def start(self, seed: int, steps: int | None) -> Episode:
        return Episode(self.task, self.core, self.policy, seed, steps)

    # ------------------------------------------------------------------ drawing
    def decisions(self, moment: Moment) -> list[Decision]:
        """The trained mothers' decisions in this moment, [] for a scripted policy or at the end (cached:
        a redrawn frame reuses them)."""
        if self.net is None or moment.action is None:
            return []
        overlay = self.controls.overlay
        if self._decided[0] is not moment or self._decided[1] != overlay:
            self._decided = (moment, overlay, decide(self.net, moment.obs[0], moment.action[0], overlay))
        return self._decided[2]

    def grid(self, moment: Moment) -> Any:
        """The world's canvas for this moment, with each (or the chosen) mother's attribution over the
        cells she sees, her view outlined in her colour."""
        r, pg, focus = self.renderer, self.pg, self.controls.focus
        r.paint(moment.state)
        decisions = self.decisions(moment)
        if not (decisions and self.controls.overlay):
            return r.canvas
        agents = r.agents(moment.state)
        r.canvas.set_clip(pg.Rect((0, 0), r.grid_size))
        for i, decision in enumerate(decisions):
            origin = r.view_origin(moment.state, 0, i)
            if origin is None or focus not in (None, i):
                continue
            cells, _ = r.split_view(decision.attribution)
            top = np.abs(cells).max()
            r.paint_heat(origin, cells / top if top > 0 else cells)
            corner = r.cell(*origin)
            pg.draw.rect(
                r.canvas, agents[i].colour, (corner.x, corner.y, self.core.V * CELL, self.core.V * CELL), 2
            )
        r.canvas.set_clip(None)
        return r.canvas

    def frame(self, episode: Episode, banner: bool = True, live: bool = False) -> Any:
        """The whole viewer (grid and panel) at the episode's moment, as a pygame surface; once it is over,
        with its summary across the grid (if `banner`; `live`: in the window, with the keys that go on)."""
        self.surface.fill(BACKGROUND)
        self.surface.blit(self.grid(episode.now), (0, 0))
        self._panel(episode, self.renderer.size[0] + 8)
        if banner and episode.over:
            self._banner(episode.summary(), live)
        return self.surface

    def _text(self, text: str, pos: tuple[int, int], colour: Any = TEXT, small: bool = False) -> None:
        self.surface.blit((self.small if small else self.font).render(text, True, colour), pos)

    def _panel_height(self) -> int:
        per_agent = ROW * (2 + self.renderer.max_facts) + (CHART + 2 * ROW if self.net else 0) + 6
        legend = ROW * (1 + (len(self.renderer.legend()) + 1) // 2)
        return 2 * ROW + self.core.A * per_agent + (ROW if self.net else 0) + legend + 3 * ROW + 8

    def _panel(self, episode: Episode, x: int) -> None:
        moment, c, pg = episode.now, self.controls, self.pg
        pace = "paused" if c.paused else f"{c.fps:g} steps/s"
        t, limit = int(moment.state.t[0]), self.core.config.max_cycles
        self._text(f"{self.task.name}   seed {episode.seed}   t={t}/{limit}   {pace}", (x, 6))
        y = 6 + 2 * ROW
        decisions, agents = self.decisions(moment), self.renderer.agents(moment.state)
        for i, agent in enumerate(agents):
            pg.draw.circle(self.surface, agent.colour, (x + 6, y + 6), 6)
            self._text(agent.name + ("" if agent.alive else "  (dead)"), (x + 18, y))
            for row, fact in enumerate(agent.facts, 1):
                fy = y + row * ROW
                self._text(fact.label, (x + 4, fy), DIM)
                if fact.share is None:
                    self._text(fact.text, (x + 88, fy))
                    continue
                share = min(max(fact.share, 0.0), 1.0)
                pg.draw.rect(self.surface, (70, 70, 78), (x + 88, fy + 1, 110, ROW - 5))
                pg.draw.rect(self.surface, fact.colour, (x + 88, fy + 1, round(110 * share), ROW - 5))
                self._text(fact.text, (x + 204, fy))
            y += ROW * (1 + self.renderer.max_facts)
            acts = moment.action is not None and agent.alive
            action = int(moment.action[0, i]) if acts else -1
            decision = decisions[i] if decisions and acts else None
            chosen = f"   p = {decision.probs[action]:.2f}" if decision else ""
            self._text(f"action: {self.task.action_names[action] if acts else '—'}{chosen}", (x + 4, y))
            y += ROW
            if self.net:
                if decision:
                    self._text(f"V_task {decision.v_task:+.3f}   V_mat {decision.v_mat:+.3f}", (x + 4, y))
                    self._chart(x + 4, y + ROW, decision.probs, action)
                    if decision.attribution is not None:
                        self._text(
                            self._beyond_view(decision.attribution), (x + 4, y + ROW + CHART), DIM, True
                        )
                y += CHART + 2 * ROW
            y += 6
        if self.net:
            whose = "" if c.focus is None else f" ({agents[c.focus].name} only)"
            self._text(f"overlay: {c.overlay}{whose}" if c.overlay else "overlay: off (o)", (x, y), DIM)
            y += ROW
        self._legend(x, y)
        for n, keys in enumerate(KEYS):
            self._text(keys, (x, self.size[1] - (2 - n) * ROW - 4), DIM, small=True)

    def _chart(self, x: int, y: int, probs: np.ndarray, chosen: int) -> None:
        """Vertical bars of the action probabilities, the chosen action's highlighted."""
        width, top = (PANEL - 16) // len(probs), CHART - 14
        for a, p in enumerate(probs):
            h = max(1, round(top * float(p)))
            self.pg.draw.rect(self.surface, (55, 55, 62), (x + a * width, y, width - 3, top))
            self.pg.draw.rect(
                self.surface, CHOSEN if a == chosen else BAR, (x + a * width, y + top - h, width - 3, h)
            )
            self._text(self.task.action_names[a][:5], (x + a * width, y + top + 2), DIM, small=True)

    def _beyond_view(self, attribution: np.ndarray) -> str:
        """The share of the attribution outside the view (her scalars: energy, ...) and its largest two."""
        cells, scalars = self.renderer.split_view(np.abs(attribution))
        total = cells.sum() + scalars.sum()
        if total == 0:
            return "no attribution"
        top = ", ".join(
            f"{self.renderer.scalar_names[j]} {scalars[j] / total:.0%}" for j in np.argsort(-scalars)[:2]
        )
        return f"outside the view {scalars.sum() / total:.0%}: {top}"

    def _legend(self, x: int, y: int) -> None:
        self._text("legend", (x, y), DIM)
        half, glyph = PANEL // 2 - 4, self.pg.Surface((CELL, CELL))
        for n, (draw, label) in enumerate(self.renderer.legend()):
            gx, gy = x + (n % 2) * half, y + (1 + n // 2) * ROW
            glyph.fill(BACKGROUND)
            draw(glyph, self.pg.Rect(0, 0, CELL - 1, CELL - 1))
            self.surface.blit(self.pg.transform.smoothscale(glyph, (ROW - 2, ROW - 2)), (gx, gy))
            self._text(label, (gx + ROW + 2, gy + 2), small=True)

    def _banner(self, summary: str, live: bool) -> None:
        """The summary across the grid, wrapped, on a translucent band."""
        width, lines = self.renderer.grid_size[0], [""]
        for word in summary.split(" "):
            if self.font.size(f"{lines[-1]} {word}")[0] > width - 16:
                lines.append(word)
            else:
                lines[-1] = f"{lines[-1]} {word}".strip()
        lines += ["", "r: next seed    q: quit"] if live else []
        band = self.pg.Surface((width, ROW * len(lines) + 12), self.pg.SRCALPHA)
        band.fill((0, 0, 0, 200))
        top = (self.renderer.grid_size[1] - band.get_height()) // 2
        self.surface.blit(band, (0, top))
        for n, text in enumerate(lines):
            self._text(text, (8, top + 6 + n * ROW))

    # ------------------------------------------------------------------ running
    def record(self, seed: int, steps: int | None, panel: bool) -> tuple[list[np.ndarray], Episode]:
        """Frames (H, W, 3) uint8 of one episode: the viewer's (`panel`) or the world's with the overlay,
        if one is on; and the episode, over."""
        episode = self.start(seed, steps)
        frames = []
        while True:
            frames.append(to_array(self.pg, self.frame(episode) if panel else self.grid(episode.now)))
            if episode.over:
                return frames, episode
            episode.advance()

    def screenshot(self, seed: int, at: int) -> tuple[np.ndarray, Episode]:
        """The viewer at step `at` of an episode, with the decision made there; at the episode's end if it
        ends sooner (then with its summary)."""
        episode = self.start(seed, at + 1)  # one step more, so the decision at `at` is known
        while int(episode.now.state.t[0]) < at and not episode.over:
            episode.advance()
        return to_array(self.pg, self.frame(episode, banner=episode.ended)), episode

    def watch(
        self, seed: int, steps: int | None, wait: bool, events: Callable[[], list] | None = None
    ) -> Episode:
        """Run the window until quit: episodes from `seed` on (r: the next seed), each printing its summary
        when it is over, quit or restarted; once over, with `wait` it stays on screen until a key, without
        it the viewer closes. `events` replaces pygame's event queue (tests). Returns the last episode."""
        events = events or self.pg.event.get
        c = self.controls
        c.quit = c.restart = False
        c.pending = 0
        episode = self.start(seed, steps)
        shown, waited = None, 0.0
        while True:
            for event in events():
                c.handle(self.pg, event)
            if c.quit:
                episode.report()
                return episode
            if c.restart:
                episode.report()
                c.restart = False
                episode = self.start(min(episode.seed + 1, MAX_SEED), steps)
            elif not episode.over and (c.pending or (not c.paused and waited >= 1000 / c.fps)):
                c.pending, waited = max(0, c.pending - 1), 0.0
                episode.advance()
                if episode.over:
                    episode.report()
                    if not wait:
                        return episode
            view = (episode.now, episode.seed, c.paused, c.fps, c.overlay, c.focus)
            if view != shown:
                self.renderer.show(self.frame(episode, live=True))
                shown = view
            waited += self.renderer.clock.tick(60)
