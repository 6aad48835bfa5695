"""The one episode loop every evaluator, recorder, probe and renderer uses, plus the episode keys and
Wilson intervals every world's evaluation shares.

`play` yields one `Transition` per step of B worlds (no auto-reset), so a consumer reads the step it
needs (events, the state before, the actions taken) and stops early with a plain `break`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from caring.protocols import Policy, Transition
from worlds.rng import MAX_SEED as MAX_SEED  # every command's seed cap, the worlds' own
from worlds.rng import episode_keys  # the world keys of evaluation episodes (any batch split)

MAX_EPISODES = 10**6  # every evaluation's episodes: a batch of keys and tallies that fits in memory


def wilson_ci95(successes: float, n: float) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 0.0)
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def play(
    core: Any, policy: Policy, state: Any, obs: torch.Tensor, steps: int | None = None
) -> Iterator[Transition]:
    """Step `policy` from (state, obs (B, A, obs_dim)) for the episode's remaining steps (at most
    max_cycles, or `steps`), yielding each step. Worlds are never reset: a finished world's agents keep
    being stepped as the core leaves them (dead mothers stay still, a walker stays at her goal)."""
    limit = core.config.max_cycles if steps is None else min(steps, core.config.max_cycles)
    for _ in range(limit):
        action = policy(state, obs)
        after, out = core.step(state, action)
        yield Transition(state, obs, action, after, out)
        state, obs = after, out.obs


class SideBySide:
    """Several policies acting in one batch of worlds, each in its own consecutive block of worlds, so
    they share each step of the world (below a few thousand worlds a step costs about the same however
    many it steps). Each policy sees exactly its block: what it would have seen stepped alone."""

    def __init__(self, blocks: Sequence[tuple[Policy, int]]):  # (policy, worlds) in batch order
        self.blocks = list(blocks)

    def __call__(self, state: Any, obs: torch.Tensor) -> torch.Tensor:
        if len(self.blocks) == 1:
            return self.blocks[0][0](state, obs)
        actions, start = [], 0
        for policy, worlds in self.blocks:
            block = slice(start, start + worlds)
            actions.append(policy(state.index(block), obs[block]))
            start += worlds
        return torch.cat(actions)


def side_by_side(
    tally: Callable[[Policy, torch.Tensor], dict[str, torch.Tensor]],
    summarise: Callable[[dict[str, torch.Tensor]], dict[str, Any]],
    policies: Sequence[Policy],
    keys: torch.Tensor,
    batch: int,
    reduce: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda tallies: tallies,
) -> list[dict[str, Any]]:
    """Each policy's evaluation on the episodes of `keys` (E,), stepped side by side in runs of at
    most `batch` worlds. `tally(policy, keys)` plays one run and returns per-world tallies (each with
    the world first); `reduce` shrinks one policy's share of a run as it is kept (e.g. to sums with a
    leading dimension of 1, so a million episodes' tallies never sit in memory); `summarise` turns one
    policy's kept tallies, concatenated, into its evaluation. A policy alone is run in the chunks of
    `batch` episodes it always was, so every world (and, for a network, every forward pass) is the one
    it would have been evaluated alone."""
    E = keys.shape[0]
    parts: list[list[dict[str, torch.Tensor]]] = [[] for _ in policies]
    run: list[tuple[int, int, int]] = []  # (policy, first episode, end) blocks of the next run

    def play_run() -> None:
        blocks = SideBySide([(policies[g], b - a) for g, a, b in run])
        tallies = tally(blocks, torch.cat([keys[a:b] for _, a, b in run]))
        offset = 0
        for g, a, b in run:
            parts[g].append(reduce({name: value[offset : offset + b - a] for name, value in tallies.items()}))
            offset += b - a
        run.clear()

    for g in range(len(policies)):
        for a in range(0, E, batch):
            b = min(a + batch, E)
            if run and sum(stop - start for _, start, stop in run) + b - a > batch:
                play_run()
            run.append((g, a, b))
    if run:
        play_run()
    return [summarise({name: torch.cat([p[name] for p in chunks]) for name in chunks[0]}) for chunks in parts]


@dataclass(frozen=True, eq=False)  # compared by identity: a viewer redraws when the moment changes
class Moment:
    """One state of an episode as a viewer shows it: the observations the agents act on in it, the
    actions they take (None at the episode's last state) and the step that led to it (None at the
    start), so a frame can show a state together with the decision made in it."""

    state: Any
    obs: torch.Tensor  # (B, A, obs_dim) uint8
    action: torch.Tensor | None  # (B, A)
    came_by: Transition | None


@torch.no_grad()  # not inference mode: a viewer takes gradients of the policy on these observations
def moments(task: Any, core: Any, policy: Policy, seed: int, steps: int | None = None) -> Iterator[Moment]:
    """Each state of one episode (episode key 0 of `seed`), up to `steps` steps (default: max_cycles)
    or the episode's end, whichever comes first."""
    state, obs = core.reset(episode_keys(seed, 1, core.device))
    came_by = None
    for step in play(core, policy, state, obs, steps):
        yield Moment(step.before, step.obs, step.action, came_by)
        came_by = step
        if bool(task.ended(step.after, step.out)[0]):
            break
    yield Moment(came_by.after, came_by.out.obs, None, came_by) if came_by else Moment(state, obs, None, None)


def render_episode(task: Any, core: Any, policy: Policy, seed: int, steps: int, renderer: Any) -> list:
    """Frames (H, W, 3) uint8 of one episode (episode key 0 of `seed`), up to `steps` steps or its end."""
    return [renderer.draw(moment.state) for moment in moments(task, core, policy, seed, steps)]
