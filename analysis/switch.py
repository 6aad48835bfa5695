"""`caring switch RUN`: does a mother's network carry "another baby is possible", and does that carry
her giving up? (spec 001's off switch)

No mother observes how many births she has left: the fact can only reach her network through the clock
(late in an episode no next baby fits in) and her history. So the probe is compared with two controls
that see as much of that for free: the same probe on a freshly initialised network of the same shape
(what the input alone gives) and on the observed time alone. Then the units of one hidden layer that
separate the two cases best (standardised mean difference) are set to their mean over the rows where
no other baby is possible (telling the network "this is your last baby"), top k against random k sets,
and scored on the abandonment assays with a birth left: if the network's switch lives in those units,
P(gives up) should fall where the same edit of random units leaves it. (A plain mean ablation would
prove nothing here: another baby is possible in most rows, so their mean already says so.)
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
from analysis.probes import activations, collect, fit_and_score, heldout
from caring.files import write_atomic, write_json
from caring.policies import TrainedMother
from worlds.config import ConfigError, param, validate_fields
from worlds.nursery.core import SCALARS, NurseryCore, NurseryState


@dataclass(frozen=True)
class SwitchSettings:
    episodes: int = param(200, "rollout episodes for the probes", 4, 10**6)
    instances: int = param(32, "instances of each abandonment situation", 2, 10**5)
    site: str = param("hook_trunk_2", "hidden layer whose units are ranked and ablated")
    units: int = param(16, "units edited (the top-ranked, and each random set)", 1, 4096)
    random_sets: int = param(10, "random unit sets of the same size", 0, 1000)
    seed: int = param(
        0, "seed of the rollouts, the probe split, the battery and the random sets", 0, 2**31 - 1
    )

    def validate(self) -> None:
        validate_fields(self)


def switch_facts(core: NurseryCore, s: NurseryState) -> dict[str, torch.Tensor]:
    """The one fact the switch probe reads: "another_baby" (1/0), (A, B)."""
    return {"another_baby": core.another_baby_possible(s).float()}


def run_switch(
    run: str | Path,
    out: Path,
    settings: SwitchSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    _, core, net = load_run(run, device)
    if core.config.births_per_life < 2:
        raise ConfigError(f"{run} was trained with one birth per life: no other baby is ever possible there")
    check_units(net, settings.site, settings.units)
    out.mkdir(parents=True, exist_ok=True)
    progress(f"rollouts: {settings.episodes} episodes")
    data = collect(core, TrainedMother(net), settings.episodes, settings.seed, facts=switch_facts)
    y, test = data.facts["another_baby"].cpu(), heldout(data)
    if int(data.world.max()) < 1 or len(y[~test].unique()) < 2 or len(y[test].unique()) < 2:
        raise ConfigError("too little probe data: both cases must occur in the train and test episodes")

    def score(x: torch.Tensor) -> float:
        x = x.cpu().double()
        return fit_and_score(x[~test], y[~test], x[test], y[test], "classification")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        fresh = net.blank().to(data.obs.device)
    trained, untrained = activations(net, data.obs), activations(fresh, data.obs)
    time = data.obs[:, core.view_dim + SCALARS.index("time")][:, None].float()  # the clock she sees
    report: dict[str, Any] = {
        "run": str(run),
        "settings": dataclasses.asdict(settings),
        "rows": len(y),
        "share_possible": float(y.mean()),
        "probe": {
            site: {"trained": score(trained[site]), "fresh_net": score(untrained[site])} for site in trained
        },
        "time_only": score(time),
    }
    progress(f"probe (balanced accuracy) at {settings.site}: {report['probe'][settings.site]['trained']:.3f}")

    acts = trained[settings.site].cpu()
    gap = (acts[y > 0.5].mean(0) - acts[y < 0.5].mean(0)).abs() / acts.std(0).clamp(min=1e-6)
    top = gap.argsort(descending=True)[: settings.units].tolist()
    battery = assays.build_battery(
        core, settings.instances, settings.seed + 1, situations=assays.ABANDONMENT, another_baby=True
    )
    last_baby = trained[settings.site][(y < 0.5).to(trained[settings.site].device)]  # (R, units)

    def gives_up(units: list[int]) -> float:
        with ablate(net, settings.site, units, "mean", last_baby):
            return assays.summary(assays.score(TrainedMother(net), battery), ("abandon",))["abandon"]

    generator = torch.Generator().manual_seed(settings.seed)
    randoms = [
        gives_up(torch.randperm(net.hidden, generator=generator)[: settings.units].tolist())
        for _ in range(settings.random_sets)
    ]
    report["ablation"] = {
        "site": settings.site,
        "top_units": top,
        "intact": gives_up([]),
        "top": gives_up(top),
        "random": randoms,
    }
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", format_switch(report))
    return report


def format_switch(report: dict[str, Any]) -> str:
    """Markdown: the probe at every hook point against its controls, then the ablation."""
    lines = [
        f"Another baby possible in {report['share_possible']:.1%} of {report['rows']:,} rows; probe "
        "scores are held-out balanced accuracies (0.5 = chance).\n",
        "| hook point | trained | fresh network | time alone |",
        "|---|---:|---:|---:|",
    ]
    for site, scores in report["probe"].items():
        lines.append(
            f"| {site} | {scores['trained']:.3f} | {scores['fresh_net']:.3f} | {report['time_only']:.3f} |"
        )
    ab = report["ablation"]
    k = len(ab["top_units"])
    randoms = ab["random"]
    spread = f"{min(randoms):.3f}–{max(randoms):.3f}" if randoms else "–"
    lines += [
        "",
        f"P(gives up) in the abandonment assays with a birth left, units of {ab['site']} set to their mean "
        "where no other baby is possible:",
        "",
        "| intact | top " + str(k) + " | random " + str(k) + " (mean; range) |",
        "|---:|---:|---:|",
        f"| {ab['intact']:.3f} | {ab['top']:.3f} | "
        + (f"{sum(randoms) / len(randoms):.3f} ({spread})" if randoms else "–")
        + " |",
    ]
    return "\n".join(lines) + "\n"
