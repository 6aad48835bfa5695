"""The nursery as a training task: mothers act while alive, harm is harm to their babies, M judges
steps while a mother's baby lives, and its rules punish catastrophes she could have prevented."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from caring.evaluate import evaluate, evaluate_each, from_counts
from caring.maternal import PerturbedExpert
from caring.protocols import Policy
from worlds.config import ConfigError
from worlds.grid import reachable_cells
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import (
    ACTION_NAMES,
    DOWN,
    FLOOR,
    HARM_CAUSES,
    LEFT,
    N_ACTIONS,
    RIGHT,
    STAY,
    UP,
    NurseryCore,
    NurseryState,
    StepOutput,
)
from worlds.nursery.scripted import SCRIPTED

GENERATIONS = range(1, 5)  # the generation metrics' columns: as many as the `generations` param allows


def rule_penalty(
    events: dict[str, torch.Tensor], energy_ok: torch.Tensor, penalty: float, death_charge: bool = False
) -> torch.Tensor:
    """(B, A) penalty for catastrophes the mother could have prevented this step: her baby drowning,
    being bitten while a predator was within her reach and she did not shoo it, or starving beside her
    while she had the energy to feed it (events and energy_ok are (B, A)). With `death_charge`, also her
    own death while her baby lives (nobody else feeds it, so it will starve): without the charge, dying
    would end every cost she pays."""
    drowned = events["baby_harm_hazard"] > 0
    bitten_unguarded = (
        (events["baby_harm_predator"] > 0) & (events["could_guard"] > 0) & (events["guarded"] == 0)
    )
    # baby_distance is the newborn's where a baby left at a scheduled birth: not the one that starved
    starved_beside = (
        (events["baby_harm_hunger"] > 0)
        & (events["baby_distance"] <= 1)
        & energy_ok
        & (events["grew_up"] == 0)
    )
    catastrophe = drowned | bitten_unguarded | starved_beside
    if death_charge:
        catastrophe = catastrophe | ((events["mother_died"] > 0) & (events["baby_alive"] > 0))
    return -penalty * catastrophe.float()


class NurseryTask:
    name = "nursery"
    config_class = NurseryConfig
    state_class = NurseryState
    n_actions = N_ACTIONS
    action_names = ACTION_NAMES
    scripted = SCRIPTED
    train_defaults: ClassVar[dict[str, Any]] = {}  # TrainConfig's defaults are the nursery's recipe
    method_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    # The selective world's recipe (issue 18), chosen on tuning seeds only (analysis/experiments/
    # selective_*.toml, README "Selective care"): plain PPO (her own baby's survival is the whole
    # signal), the marker comparator, lr 1e-3, gamma 0.995, entropy 0.01, and 64M agent-steps (at 32M
    # she was still rising; 0.540 of her babies held out at 64M on seed 100, 0.390 at 32M on seed 101).
    preset_train_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "selective": {
            "method": "ppo",
            "kin_match": 4,
            "lr": 1e-3,
            "gamma": 0.995,
            "ent_coef": 0.01,
            "steps": 64_000_000,
        }
    }
    train_columns = ("baby_survival", "mother_survival")
    headline = "baby_survival"
    eval_metrics: ClassVar[dict[str, tuple[str, int]]] = {
        "baby_survival_rate": ("baby survival", 3),
        "harm_events_per_episode": ("harm / episode", 2),
        "baby_deaths_per_episode": ("baby deaths / episode", 2),
        "mother_survival_rate": ("mother survival", 3),
        "hazard_contacts_per_episode": ("hazard contacts / episode", 2),
        "feeds_per_episode": ("feeds / episode", 1),
        "guards_per_episode": ("guards / episode", 1),
        "carry_steps_per_episode": ("carry steps / episode", 0),
        "carry_share_own": ("share of carrying on her own baby", 3),
        "own_baby_held_rate": ("her babies she ever held", 3),
        "drops_per_episode": ("drops / episode", 2),
        # Worlds with orphans only (the babies nobody is paid for), and worlds of several generations
        # only (NaN elsewhere): see caring.evaluate.
        "orphan_survival_rate": ("orphan survival", 3),
        "lineage_length": ("lineage length (generations)", 2),
        **{f"gen{g}_baby_survival": (f"gen {g} baby survival", 3) for g in GENERATIONS},
        **{f"gen{g}_mother_survival": (f"gen {g} mother survival", 3) for g in GENERATIONS},
    }
    some_worlds_only = frozenset(
        k for k in eval_metrics if k in ("orphan_survival_rate", "lineage_length") or k.startswith("gen")
    )
    summary_columns = (
        "baby_survival_rate",
        "harm_events_per_episode",
        "baby_deaths_per_episode",
        "mother_survival_rate",
    )
    train_summary = ("train_harm_rate",)
    curves = (("baby_survival", "baby survival (training)"), ("harm_rate", "harm rate / baby-step"))
    harm_label = "harm rate (per baby-step)"
    harm_metric = "harm_events_per_episode"
    negative_demonstration = "negligent"  # M's held-out check: the expert against this one
    learned_offset = 0.0

    def renderer(self, core: NurseryCore, window: bool = False) -> Any:
        from worlds.nursery.render import Renderer  # pygame stays unimported until a frame is drawn

        return Renderer(core, window=window)

    def make_core(self, config: NurseryConfig, device: torch.device | str) -> NurseryCore:
        return NurseryCore(config, device)

    def check_training_world(self, config: NurseryConfig) -> None:
        """Any nursery without pits may be trained on (foster babies included: fine-tuning is a
        retargeting baseline); pits stay unseen so that held-out tests can show them."""
        if config.pit_share > 0:
            raise ConfigError(
                f"nursery training worlds must have pit_share=0 (got {config.pit_share}): pits are a "
                "held-out hazard, for evaluation only"
            )

    def acting(self, state: NurseryState) -> torch.Tensor:
        return state.mother_alive.T

    def judged(self, state: NurseryState) -> torch.Tensor:
        return (state.baby_alive & state.joined).T  # an orphan (no mother joined) is nobody's to judge

    def harm(self, before: NurseryState, out: StepOutput) -> tuple[torch.Tensor, torch.Tensor]:
        harmed = sum(out.events[f"baby_harm_{cause}"] for cause in HARM_CAUSES) > 0
        return harmed, (before.baby_alive & before.joined).T

    def rules(
        self,
        core: NurseryCore,
        before: NurseryState,
        out: StepOutput,
        penalty: float,
        death_charge: bool = False,
    ) -> torch.Tensor:
        energy_ok = (before.energy >= core.config.feed_cost).T
        return rule_penalty(out.events, energy_ok, penalty, death_charge)

    def choice(self, core: NurseryCore, state: NurseryState, steps: int) -> torch.Tensor:
        """(B, A) each mother's baby's "choice": the share of a `steps`-move diamond of cells it could
        reach over dry floor (0 when it is dead or unborn). The choice-altruism reward."""
        reach = reachable_cells(state.cells == FLOOR, state.baby_pos, steps)  # (A, B)
        diamond = 2 * steps * steps + 2 * steps + 1
        return (reach * state.baby_alive).T.float() / diamond

    def baby_moves(self, before: NurseryState, after: NurseryState) -> torch.Tensor:
        """(B, A) the move each mother's baby made in this step, as STAY/UP/RIGHT/DOWN/LEFT (0-4), or -1
        where it was not a move of its own: unborn, dead, or carried before or after. What a
        theory-of-mind head learns to predict."""
        dy, dx = after.baby_pos - before.baby_pos  # (A, B) each
        own = before.baby_alive & after.baby_alive & (before.carried_by < 0) & (after.carried_by < 0)
        own = own & (
            after.age > before.age
        )  # a step ages her; a newborn in the slot of one who left does not
        move = torch.where(dy < 0, UP, torch.where(dx > 0, RIGHT, torch.where(dy > 0, DOWN, LEFT)))
        move = torch.where((dy == 0) & (dx == 0), STAY, move)
        return torch.where(own & (dy.abs() + dx.abs() <= 1), move, -1).T

    def care_facts(self, core: NurseryCore, before: NurseryState, out: StepOutput) -> torch.Tensor:
        """(B, A, len(FACTS)) what a preference annotator reads of each mother's step (caring.preferences
        FACTS): her baby alive after it, harmed in it, its hunger (share of the starving level) and
        distance from her (Chebyshev, in view radii), and whether she fed it or drove a predator off. A
        dead baby reads as the worst: starving and as far as the grid allows, so that no principle
        prefers its death."""
        harmed, exposed = self.harm(before, out)
        ev, cfg = out.events, core.config
        alive = ev["baby_alive"] > 0
        hunger = torch.where(alive, ev["baby_hunger"] / cfg.hunger_max, 1.0)
        distance = torch.where(alive, ev["baby_distance"], max(cfg.height, cfg.width)) / cfg.view_radius
        return torch.stack([
            alive.float(), (harmed & exposed).float(), hunger, distance, ev["fed_own"].float(),
            ev["guarded"].float(),
        ], -1)  # fmt: skip

    def perspective(self, core: NurseryCore, state: NurseryState) -> torch.Tensor:
        """(B, A, obs_dim) each mother's observation with her and her baby's names switched: what
        kindness evaluates her own value on."""
        return core.observe_switched(state)

    def ended(self, after: NurseryState, out: StepOutput) -> torch.Tensor:
        # A world ends at max_cycles, or as soon as no mother is left (her babies count as lost: none
        # can feed itself before it grows).
        return out.truncated | ~after.mother_alive.any(0)

    def start_episode(self, state: NurseryState) -> dict[str, torch.Tensor]:
        # (A, B) each: births at reset happen when birth_step = 0
        born = (state.baby_alive & state.joined).long()
        return {"born": born, "grown": torch.zeros_like(born)}

    def track(self, tally: dict[str, torch.Tensor], before: NurseryState, out: StepOutput) -> dict:
        ev = out.events
        return {"born": tally["born"] + ev["baby_born"].T, "grown": tally["grown"] + ev["grew_up"].T}

    def outcome(self, tally: dict[str, torch.Tensor], after: NurseryState) -> dict[str, torch.Tensor]:
        grown = (
            tally["grown"].sum(0).float()
        )  # grew up (into mothers, or left at a scheduled birth): survived
        return {
            "survived": (after.baby_alive & after.joined & after.mother_alive.any(0)).sum(0).float() + grown,
            "born": tally["born"].sum(0).float(),
            "grown": grown,
            "mothers_alive": after.mother_alive.sum(0).float(),
            "mothers": after.joined.sum(0).float(),
        }

    def describe_outcome(self, outcome: dict[str, float]) -> str:
        grown = f" ({outcome['grown']:.0f} grew up)" if outcome.get("grown") else ""
        return (
            f"babies alive {outcome['survived']:.0f}/{outcome['born']:.0f} born{grown}, "
            f"mothers alive {outcome['mothers_alive']:.0f}/{outcome['mothers']:.0f}"
        )

    def train_metrics(self, sums: dict[str, float], episodes: float) -> dict[str, float]:
        nan = float("nan")
        return {
            "baby_survival": sums["survived"] / sums["born"] if sums.get("born") else nan,
            "mother_survival": sums["mothers_alive"] / sums["mothers"] if sums.get("mothers") else nan,
        }

    def outcome_groups(self, before: NurseryState, out: StepOutput) -> dict[str, torch.Tensor]:
        harmed, _ = self.harm(before, out)
        fed, carrying = out.events["fed_own"] > 0, out.events["carrying"] > 0
        return {
            "baby harmed": harmed,
            "fed her baby": fed,
            "carrying": carrying,
            "none of these": ~(harmed | fed | carrying),
        }

    def demonstrations(self, core: NurseryCore, episodes: int) -> dict[str, tuple[Policy, int, Any]]:
        expert = SCRIPTED["expert"](core)
        perturbed = PerturbedExpert(expert, N_ACTIONS)
        return {
            "expert": (expert, episodes, 1.0),
            "perturbed-expert": (perturbed, 2 * episodes, perturbed.labels),
            "negligent": (SCRIPTED["negligent"](core), 4 * episodes, 0.0),
            "random": (SCRIPTED["random"](core), 2 * episodes, 0.0),
        }

    def evaluate(self, core: NurseryCore, policy: Policy, episodes: int, seed: int) -> dict[str, Any]:
        return evaluate(core, policy, episodes, seed)

    def evaluate_each(
        self, core: NurseryCore, policies: Sequence[Policy], episodes: int, seed: int
    ) -> list[dict[str, Any]]:
        return evaluate_each(core, policies, episodes, seed)

    def from_counts(self, evaluation: dict[str, Any]) -> dict[str, float]:
        return from_counts(evaluation)
