"""The shapes everything in `caring` agrees on, in a leaf module that imports nothing of the project:
a policy, a world's training task, and one step of an episode.

Shapes: world states are batch-last (see `worlds.grid.BatchLastState`); per-agent tensors are (B, A)
batch-first, like the cores' outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

Policy = Callable[[Any, torch.Tensor], torch.Tensor]
"""(state, obs (B, A, obs_dim) uint8) -> actions (B, A). Scripted policies read state, learned ones obs."""


@dataclass(frozen=True)
class Transition:
    """One step of B worlds: the state and observations the agents acted on, their actions, and what
    the core returned (the state after the step, before any auto-reset)."""

    before: Any  # the world's state
    obs: torch.Tensor  # (B, A, obs_dim) uint8
    action: torch.Tensor  # (B, A) int64
    after: Any  # the world's state
    out: Any  # the core's step output: obs, reward, terminated, truncated, events


class Task(Protocol):
    """What training, the maternal model and evaluation need to know about a world, one per world.

    The trainer, the streams and the sweep runner are world-agnostic; everything that names a world's
    rules (who acts, what counts as harm, what the maternal rules punish, whose demonstrations teach M,
    what an episode's outcome is) lives in the world's task."""

    name: str
    config_class: type  # the world's frozen config dataclass
    state_class: type  # the world's state dataclass (checkpointed field by field)
    n_actions: int
    action_names: tuple[str, ...]
    scripted: dict[str, Callable[[Any], Policy]]  # name -> factory(core)
    train_defaults: dict[str, Any]  # TrainConfig settings of the recipe that works in this world
    method_defaults: dict[str, dict[str, Any]]  # per method: its best settings here, over train_defaults
    preset_train_defaults: dict[str, dict[str, Any]]  # per world preset: its recipe, over the method's
    train_columns: tuple[str, ...]  # per-update outcome columns of metrics.csv; the first two are rates
    headline: str  # the train column a progress bar shows
    eval_metrics: dict[str, tuple[str, int]]  # scalar keys of `evaluate`'s result -> (label, digits)
    some_worlds_only: frozenset[str]  # eval metrics only some configs of the world have (NaN elsewhere)
    summary_columns: tuple[str, ...]  # eval metrics a sweep's table shows by default (first: headline)
    train_summary: tuple[str, ...]  # training summaries (`analysis.sweep.training_summary`) it shows
    curves: tuple[tuple[str, str], ...]  # metrics.csv (column, label) a sweep plots over training
    harm_label: str  # what harm_rate counts, for plots
    harm_metric: str  # the eval metric a harm-vs-headline (Pareto) plot puts on its x axis
    # Added to sigmoid(M) in r_mat. A per-step payment decides whether ending the episode sooner is
    # worth more or less, so its sign must favour the right ending: nursery episodes end early only by a
    # death (0: the judgement is in (0, 1)), lava episodes only at the goal (-1: in (-1, 0)).
    learned_offset: float
    negative_demonstration: str  # the demonstration M's held-out check sets against the expert's

    def make_core(self, config: Any, device: torch.device | str) -> Any: ...

    def renderer(self, core: Any, window: bool = False) -> Any:
        """A pygame renderer with `draw(state, world=0) -> (H, W, 3) uint8` and `close()`."""

    def check_training_world(self, config: Any) -> None:
        """Raise ConfigError for a world that must not be trained on (e.g. one with held-out hazards)."""

    def acting(self, state: Any) -> torch.Tensor:
        """(B, A) bool: agents whose step is a training sample (before the step)."""

    def judged(self, state: Any) -> torch.Tensor:
        """(B, A) bool: agents whose step M's learned part judges (before the step)."""

    def harm(self, before: Any, out: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(harmed, exposed), both (B, A) bool: this step's harm and who could have been harmed; the
        adaptive β₁ schedule reads their ratio."""

    def rules(
        self, core: Any, before: Any, out: Any, penalty: float, death_charge: bool = False
    ) -> torch.Tensor:
        """(B, A) float: the maternal rules' penalty for this step (≤ 0); `death_charge` also charges a
        mother who dies while her charge still needs her."""

    def ended(self, after: Any, out: Any) -> torch.Tensor:
        """(B,) bool: worlds whose episode is over (the trainer resets them)."""

    def start_episode(self, state: Any) -> dict[str, torch.Tensor]:
        """Per-world running tallies of a fresh episode, each (B,) or (A, B)."""

    def track(self, tally: dict[str, torch.Tensor], before: Any, out: Any) -> dict[str, torch.Tensor]:
        """The tallies after one step."""

    def outcome(self, tally: dict[str, torch.Tensor], after: Any) -> dict[str, torch.Tensor]:
        """(B,) float per outcome of each world's episode, if it ended now."""

    def describe_outcome(self, outcome: dict[str, float]) -> str:
        """One world's `outcome` in words, for the viewer's end-of-episode line."""

    def train_metrics(self, sums: dict[str, float], episodes: float) -> dict[str, float]:
        """`train_columns` from outcomes summed over the episodes that ended in an update."""

    def outcome_groups(self, before: Any, out: Any) -> dict[str, torch.Tensor]:
        """name -> (B, A) bool: kinds of step outcome `caring audit` reports M's mean reward for."""

    def demonstrations(self, core: Any, episodes: int) -> dict[str, tuple[Policy, int, Any]]:
        """name -> (policy, episodes, label: a constant or a Labeller) that M learns from."""

    def evaluate(self, core: Any, policy: Policy, episodes: int, seed: int) -> dict[str, Any]: ...

    def evaluate_each(
        self, core: Any, policies: Sequence[Policy], episodes: int, seed: int
    ) -> list[dict[str, Any]]:
        """`evaluate` of each policy on the same episodes, stepped side by side (`caring.episodes`)."""

    def from_counts(self, evaluation: dict[str, Any]) -> dict[str, float]:
        """The eval metrics that `evaluate`'s stored counts still give: a sweep fills them into cells
        evaluated before those metrics existed instead of evaluating them again."""
