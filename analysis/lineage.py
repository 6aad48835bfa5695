"""`caring lineage RUN`: the caring drive along a chain of generations (spec 001).

The units of one hidden layer are ranked by the caring assays (constructed situations, the same for
every generation: a mother's observation does not say which generation she is), then the top k are
mean-ablated in the mothers of ONE generation at a time, every other mother acting intact, against
random k-unit sets ablated the same way. Each generation's baby survival under each condition shows
where the drive located once is at work: if ablating it in generation 3 costs generation 3's babies
as much as ablating it in generation 1 costs generation 1's, the granddaughters care with the same
units. Both passes of a step share the world's sampling noise, so conditions differ only by the
ablation; every condition is evaluated on the same episodes (paired).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from analysis import assays
from analysis.circuits import check_units, load_run
from analysis.hooks import ablate
from analysis.localize import rank_units
from analysis.probes import activations, collect
from analysis.stats import summarize
from caring.files import write_atomic, write_json
from caring.networks import MotherNet
from caring.policies import TrainedMother
from worlds.config import ConfigError, param, validate_fields


@dataclass(frozen=True)
class LineageSettings:
    episodes: int = param(200, "evaluation episodes per condition (the same episodes in each)", 4, 10**6)
    instances: int = param(32, "instances of each assay situation, for the ranking", 2, 10**5)
    site: str = param("hook_trunk_2", "hidden layer whose units are ranked and ablated")
    units: int = param(16, "top-ranked units ablated", 1, 4096)
    random_sets: int = param(5, "random unit sets of the same size, per generation", 0, 1000)
    seed: int = param(0, "seed of the rollouts, batteries, episodes and random sets", 0, 2**31 - 1)

    def validate(self) -> None:
        validate_fields(self)


class AblatedIn:
    """A trained mother with `units` of `site` mean-ablated in the mothers of the slots in `where`
    (A,) bool only; the other mothers act on the intact network. (B, A) actions."""

    def __init__(
        self, net: MotherNet, where: torch.Tensor, site: str, units: list[int], reference: torch.Tensor
    ):
        self.net, self.where, self.site, self.units, self.reference = net, where, site, units, reference
        self.mother = TrainedMother(net)

    def __call__(self, state: Any, obs: torch.Tensor) -> torch.Tensor:
        intact = self.mother(state, obs)
        with ablate(self.net, self.site, self.units, "mean", self.reference):
            ablated = self.mother(state, obs)
        return torch.where(self.where[None], ablated, intact)


def run_lineage(
    run: str | Path,
    out: Path,
    settings: LineageSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    task, core, net = load_run(run, device)
    G = core.config.generations
    if G < 2:
        raise ConfigError(
            f"{run} was trained in a world of one generation: `caring lineage` needs generations > 1"
        )
    check_units(net, settings.site, settings.units)
    out.mkdir(parents=True, exist_ok=True)
    progress(f"ranking the units of {settings.site} on the caring assays")
    reference = activations(net, collect(core, TrainedMother(net), settings.episodes, settings.seed).obs)
    reference = reference[settings.site]
    battery = assays.build_battery(core, settings.instances, settings.seed + 1, "kin")
    top = rank_units(net, battery, settings.site, reference)[: settings.units].tolist()
    generator = torch.Generator().manual_seed(settings.seed)
    eval_seed = settings.seed + 2  # not the rollouts whose states give the mean-ablation reference

    def measure_each(where: torch.Tensor, unit_sets: list[list[int]]) -> list[list[float]]:
        """Each unit set ablated in the mothers of `where`, side by side on the same episodes: per set,
        each generation's baby survival."""
        mothers = [AblatedIn(net, where, settings.site, units, reference) for units in unit_sets]
        results = task.evaluate_each(core, mothers, settings.episodes, eval_seed)
        return [[result[f"gen{g + 1}_baby_survival"] for g in range(G)] for result in results]

    nowhere = torch.zeros(core.A, dtype=torch.bool, device=core.device)
    report: dict[str, Any] = {
        "run": str(run),
        "settings": dataclasses.asdict(settings),
        "top_units": top,
        "intact": measure_each(nowhere, [[]])[0],
        "ablated_in": [],
    }
    progress("intact: " + _survivals(report["intact"]))
    for g in range(G):
        where = core.generation == g
        randoms = [
            torch.randperm(net.hidden, generator=generator)[: settings.units].tolist()
            for _ in range(settings.random_sets)
        ]
        top_ablated, *random_ablated = measure_each(where, [top, *randoms])
        row = {"generation": g + 1, "top": top_ablated, "random": random_ablated}
        report["ablated_in"].append(row)
        progress(f"top {settings.units} ablated in generation {g + 1}: " + _survivals(row["top"]))
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", format_lineage(report))
    return report


def pooled_lineage(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Over runs (training seeds): per generation g, how much ablating the drive in g's mothers costs
    g's babies (intact minus ablated), for the top units and the mean of the random sets, each as mean
    and IQM with bootstrap 95% CIs over runs; and the intact survival."""
    G = len(reports[0]["intact"])
    if any(len(r["intact"]) != G for r in reports):
        raise ConfigError("the runs pooled by `caring lineage` must have the same number of generations")
    pooled: dict[str, Any] = {"runs": [r["run"] for r in reports], "generations": []}
    for g in range(G):
        intact = [_number(r["intact"][g]) for r in reports]
        top = [_number(r["intact"][g]) - _number(r["ablated_in"][g]["top"][g]) for r in reports]
        rand = [_number(r["intact"][g]) - _mean_at(r["ablated_in"][g]["random"], g) for r in reports]
        pooled["generations"].append(
            {
                "generation": g + 1,
                "intact": summarize(intact),
                "top_drop": summarize(top),
                "random_drop": summarize(rand),
            }
        )
    return pooled


def _number(value: float | None) -> float:
    """A survival from a report (JSON keeps NaN, "no baby of that generation born", as null)."""
    return float("nan") if value is None else float(value)


def _mean_at(rows: list[list[float | None]], g: int) -> float:
    """Mean of entry g over rows (NaN without rows)."""
    return sum(_number(row[g]) for row in rows) / len(rows) if rows else float("nan")


def format_pooled(pooled: dict[str, Any]) -> str:
    """Markdown: per generation, intact survival and the drops, mean [95% CI] over runs."""

    def cell(stats: dict[str, Any]) -> str:
        if not stats["n"]:
            return "–"
        lo, hi = stats["mean_ci95"]
        return f"{stats['mean']:.3f} [{lo:.3f}, {hi:.3f}]"

    n = len(pooled["runs"])
    lines = [
        f"| generation | baby survival, intact (n={n}) | drop, top units ablated in her generation | "
        "drop, random units |",
        "|---|---|---|---|",
    ]
    for row in pooled["generations"]:
        cells = [cell(row[k]) for k in ("intact", "top_drop", "random_drop")]
        lines.append(f"| {row['generation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _survivals(values: list[float]) -> str:
    return ", ".join(f"gen {g + 1} {v:.3f}" for g, v in enumerate(values))


def format_lineage(report: dict[str, Any]) -> str:
    """Markdown: each generation's baby survival, intact and with the drive ablated in each generation."""
    G, k = len(report["intact"]), report["settings"]["units"]
    head = "| condition | " + " | ".join(f"gen {g + 1} baby survival" for g in range(G)) + " |"
    lines = [
        head,
        "|---|" + "---:|" * G,
        "| intact | " + " | ".join(f"{v:.3f}" for v in report["intact"]) + " |",
    ]
    for row in report["ablated_in"]:
        g = row["generation"]
        lines.append(f"| top {k} ablated in gen {g} | " + " | ".join(f"{v:.3f}" for v in row["top"]) + " |")
        if row["random"]:
            means = torch.tensor(row["random"]).nanmean(0).tolist()
            label = f"random {k} ablated in gen {g} (mean of {len(row['random'])})"
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    return "\n".join(lines) + "\n"
