"""Localization: rank a hook point's units by how much care flows through them, ablate the top k, and
compare with random unit sets of the same size.

Units are ranked on one battery of caring assays (the "ranking" battery) and scored on another built
from a different seed, so a ranking is never graded on the instances that chose it. Two rankings:
`ablation` (each unit mean-ablated alone: the drop of the care score minus the drop of the self-care
score, so units the mother also needs for herself rank low) and `conductance` (captum's layer
conductance of the protective log-probability). Every point of an ablation curve evaluates the mother
on the same episodes, so differences between points are paired.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from analysis import assays
from analysis.attribution import unit_conductance
from analysis.hooks import Intervened, ablate
from caring.networks import MotherNet
from caring.policies import TrainedMother
from worlds.config import ConfigError
from worlds.nursery.core import NurseryCore

RANKINGS = ("ablation", "conductance")
# The localisation goal (issue 18): at most SMALL_SET of a layer's units whose ablation drops her babies'
# survival from at least STRONG of the expert's to at most DROPPED of it, her own survival moving at most
# MOTHER_MOVE, and random sets of the same size moving her babies' survival at most RANDOM_MOVE.
SMALL_SET, STRONG, DROPPED, MOTHER_MOVE, RANDOM_MOVE = 0.05, 0.8, 0.3, 0.05, 0.10


def care_and_self(net: MotherNet, battery: assays.Battery) -> dict[str, float]:
    return assays.summary(assays.score(TrainedMother(net), battery))


def rank_units(
    net: MotherNet, battery: assays.Battery, site: str, reference: torch.Tensor, by: str = "ablation"
) -> torch.Tensor:
    """(units,) unit indices of hook point `site`, most care-carrying first."""
    if by not in RANKINGS:
        raise ConfigError(f"unknown ranking {by!r}; valid rankings: {', '.join(RANKINGS)}")
    if by == "conductance":
        return unit_conductance(net, battery, site, battery.of_kind("care")).detach().argsort(descending=True)
    return ablation_effects(net, battery, site, reference).argsort(descending=True)


def ablation_effects(
    net: MotherNet, battery: assays.Battery, site: str, reference: torch.Tensor
) -> torch.Tensor:
    """(units,) for each unit of `site` mean-ablated alone: the drop of the care score minus the drop
    of the self-care score (positive: the unit serves care more than the mother herself)."""
    base = care_and_self(net, battery)
    effects = []
    for unit in range(reference.shape[1]):
        with ablate(net, site, [unit], "mean", reference):
            ablated = care_and_self(net, battery)
        effects.append((base["care"] - ablated["care"]) - (base["self"] - ablated["self"]))
    return torch.tensor(effects)


ROLES = ("recognition", "care", "self")


def role_scores(
    net: MotherNet, care: assays.Battery, recognition: dict[str, assays.Battery]
) -> dict[str, float]:
    """Three scores that each hold the others fixed. care: mean P(protective) in the care situations, her
    baby wearing her marker; self: in the self-care ones; recognition: P(a step towards her baby alone)
    when it wears her marker minus when it wears a never-seen one (`recognition` batteries "kin" and
    "novel"), the same care asked for both times."""
    mother = TrainedMother(net)
    scores = care_and_self(net, care)
    towards = {
        marker: assays.summary(assays.score(mother, battery), (assays.RECOGNITION,))[assays.RECOGNITION]
        for marker, battery in recognition.items()
    }
    return {"recognition": towards["kin"] - towards["novel"], "care": scores["care"], "self": scores["self"]}


def role_effects(
    net: MotherNet,
    site: str,
    reference: torch.Tensor,
    care: assays.Battery,
    recognition: dict[str, assays.Battery],
) -> dict[str, torch.Tensor]:
    """For each unit of `site` mean-ablated alone, the drop of each role score (`role_scores`): (units,)
    per role. A unit that carries recognition drops it and leaves care; one that carries care the
    reverse."""
    base = role_scores(net, care, recognition)
    drops: dict[str, list[float]] = {role: [] for role in ROLES}
    for unit in range(reference.shape[1]):
        with ablate(net, site, [unit], "mean", reference):
            ablated = role_scores(net, care, recognition)
        for role in ROLES:
            drops[role].append(base[role] - ablated[role])
    return {role: torch.tensor(values) for role, values in drops.items()}


def ablation_curve(
    core: NurseryCore,
    task: Any,
    net: MotherNet,
    battery: assays.Battery,
    site: str,
    ranking: torch.Tensor,
    reference: torch.Tensor,
    sizes: list[int],
    random_sets: int = 20,
    episodes: int = 200,
    seed: int = 0,
    mode: str = "mean",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """For each k in `sizes`: the mother's metrics with the top-k ranked units ablated, and with each of
    `random_sets` random k-unit sets ablated (drawn from a generator seeded by `seed`)."""
    units = reference.shape[1]
    if any(k < 0 or k > units for k in sizes):
        raise ConfigError(f"ablation sizes must lie in 0..{units} for {site}")
    generator = torch.Generator().manual_seed(seed)

    def measure_all(unit_sets: list[list[int]]) -> list[dict[str, float]]:
        """Each set ablated, evaluated side by side on the same episodes, then its assays scored (a
        resampling ablation draws from a generator of its own per set, evaluation first)."""
        draws = [torch.Generator().manual_seed(seed) for _ in unit_sets]
        mothers = [
            Intervened(TrainedMother(net), partial(ablate, net, site, chosen, mode, reference, generator=g))
            for chosen, g in zip(unit_sets, draws, strict=True)
        ]
        results = task.evaluate_each(core, mothers, episodes, seed)
        points = []
        for chosen, g, result in zip(unit_sets, draws, results, strict=True):
            with ablate(net, site, chosen, mode, reference, generator=g):
                scores = care_and_self(net, battery)
            points.append(
                {
                    "baby_survival": result["baby_survival_rate"],
                    "mother_survival": result["mother_survival_rate"],
                    "care_assay": scores["care"],
                    "self_assay": scores["self"],
                }
            )
        return points

    curve: dict[str, Any] = {"site": site, "mode": mode, "units": units, "episodes": episodes, "points": []}
    for k in sizes:
        sets = [ranking[:k].tolist()] + [
            torch.randperm(units, generator=generator)[:k].tolist() for _ in range(random_sets)
        ]
        top, *randoms = measure_all(sets)
        curve["points"].append({"k": k, "top": top, "random": randoms})
        if progress:
            progress(
                f"k={k}: top-k baby survival {top['baby_survival']:.3f}, random median "
                f"{_median([r['baby_survival'] for r in randoms]):.3f}"
            )
    return curve


def _median(values: list[float]) -> float:
    return float(torch.tensor(values).median()) if values else float("nan")


def localisation_goal(curve: dict[str, Any], expert: float) -> dict[str, Any]:
    """The localisation goal judged on an ablation curve (which must include k = 0, the intact mother)
    against the expert's baby survival `expert`: for each ablated size of at most SMALL_SET of the
    units, each part's value and whether it is met; the goal is met if one size meets every part.
    Random sets are judged by their median change (the typical set of that size); the largest is kept
    beside it."""
    intact = next((p["top"] for p in curve["points"] if p["k"] == 0), None)
    if intact is None:
        raise ConfigError("the localisation goal needs the intact mother: include 0 in the ablation sizes")
    strong = intact["baby_survival"] / expert if expert > 0 else float("nan")
    sizes = []
    for point in curve["points"]:
        k, top = point["k"], point["top"]
        if k == 0 or k > SMALL_SET * curve["units"]:
            continue
        moves = sorted(abs(r["baby_survival"] - intact["baby_survival"]) for r in point["random"])
        random_move = moves[len(moves) // 2] if moves else None
        row = {
            "k": k,
            "share_of_units": k / curve["units"],
            "ablated_share_of_expert": top["baby_survival"] / expert if expert > 0 else float("nan"),
            "mother_survival_change": top["mother_survival"] - intact["mother_survival"],
            "random_sets_median_move": random_move,
            "random_sets_largest_move": moves[-1] if moves else None,
        }
        row["met"] = bool(
            row["ablated_share_of_expert"] <= DROPPED
            and abs(row["mother_survival_change"]) <= MOTHER_MOVE
            and random_move is not None
            and random_move <= RANDOM_MOVE
        )
        sizes.append(row)
    return {
        "expert_baby_survival": expert,
        "intact_share_of_expert": strong,
        "strong_before": bool(strong >= STRONG),
        "sizes": sizes,
        "bars": {
            "small_set": SMALL_SET,
            "strong": STRONG,
            "dropped": DROPPED,
            "mother_move": MOTHER_MOVE,
            "random_move": RANDOM_MOVE,
        },
        "met": bool(strong >= STRONG and any(row["met"] for row in sizes)),
    }
