"""`caring probe RUN --out DIR`: where does a trained mother's care live?

One pass over a nursery run: the caring assays (the mother with her own, a foster and a stranger's
marker on her baby, against the scripted mothers), integrated gradients on the observation, linear
probes at every hook point with their two controls, each unit's role (its drop of recognition, of care
and of self-care when ablated alone: one part, or two?), and the localization: units of one hook point
ranked on one assay battery and ablated top-k against random unit sets, scored on another battery and
on full episodes. Writes figures, `report.json` (every number) and `report.md` (the headline table).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from analysis import assays, circuit_plots
from analysis.attribution import integrated_gradients, unit_conductance
from analysis.hooks import Intervened, ablate
from analysis.localize import ROLES, ablation_curve, localisation_goal, rank_units, role_effects, role_scores
from analysis.probes import FACTS, activations, collect, probe_all
from caring.files import write_atomic, write_json
from caring.networks import MotherNet
from caring.policies import TrainedMother, load_policy
from caring.runs import load_mother, run_config, run_world
from caring.tasks import get_task
from worlds.config import ConfigError, build_config, param, validate_fields, with_preset

REFERENCE_POLICIES = ("expert", "negligent", "random")


@dataclass(frozen=True)
class ProbeSettings:
    episodes: int = param(200, "rollout episodes for the probes, and episodes per ablation point", 4, 10**6)
    instances: int = param(64, "instances of each assay situation", 2, 10**5)
    site: str = param("hook_trunk_2", "hook point whose units are ranked and ablated")
    ranking: str = param("ablation", "how units are ranked", choices=("ablation", "conductance"))
    mode: str = param("mean", "how units are ablated", choices=("zero", "mean", "resample"))
    sizes: tuple[int, ...] = (0, 1, 2, 4, 6, 8, 12, 16, 32)
    random_sets: int = param(20, "random unit sets per ablation size", 0, 10**4)
    seed: int = param(0, "seed of rollouts, batteries, episodes and random unit sets", 0, 2**31 - 1)
    expert: str = param(
        "expert", "the scripted mother whose baby survival the localisation goal is a share of"
    )

    def validate(self) -> None:
        validate_fields(self)


def load_run(run: str | Path, device: str = "cpu", world: dict | None = None) -> tuple[Any, Any, MotherNet]:
    """(task, core, net) of a nursery run directory (its own world, with `world` settings over it),
    or one clear error."""
    path = Path(run)
    saved = run_config(path)
    if not (path / "mother.safetensors").exists():
        raise ConfigError(f"{run} has no trained mother (no mother.safetensors): train it or resume it first")
    name, config = run_world(path, saved)
    if name != "nursery":
        raise ConfigError(f"{run} was trained on the {name} world; the caring analyses need a nursery run")
    task = get_task(name)
    config = build_config(
        task.config_class, with_preset(task.config_class, dataclasses.asdict(config), world or {})
    )
    core = task.make_core(config, device)
    return task, core, load_mother(path, core, task)


def check_hidden_site(net: MotherNet, site: str) -> None:
    """Units are ranked, ablated, steered and patched at the hidden layers' hook points only."""
    hidden = [name for name in net.hook_points() if name.startswith("hook_trunk")]
    if site not in hidden:
        raise ConfigError(f"--site must be a hidden layer's hook point: {', '.join(hidden)}; got {site!r}")


def finished_report(run: str | Path, out: Path, settings: Any) -> dict[str, Any] | None:
    """The report.json an earlier, finished analysis of this run with these settings (a dataclass) left
    in `out`, so a study over several runs resumes where it stopped (None: none, or a different one)."""
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    same_settings = report.get("settings") == json.loads(json.dumps(dataclasses.asdict(settings)))
    return report if report.get("run") == str(run) and same_settings else None


def check_units(net: MotherNet, site: str, units: int) -> None:
    """An analysis that edits `units` units of hidden layer `site`: the site must be a hidden layer's hook
    point and have that many units."""
    check_hidden_site(net, site)
    if units > net.hidden:
        raise ConfigError(f"--units must be at most the layer's {net.hidden} units, got {units}")


def run_probe(
    run: str | Path,
    out: Path,
    settings: ProbeSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    task, core, net = load_run(run, device)
    check_hidden_site(net, settings.site)
    if any(k > net.hidden for k in settings.sizes):
        raise ConfigError(f"ablation sizes must be at most the layer's {net.hidden} units")
    if settings.expert not in task.scripted:
        raise ConfigError(f"unknown --expert {settings.expert!r}; valid: {', '.join(task.scripted)}")
    out.mkdir(parents=True, exist_ok=True)
    mother = TrainedMother(net)
    report: dict[str, Any] = {"run": str(run), "settings": dataclasses.asdict(settings)}

    progress("assays")
    batteries = {m: assays.build_battery(core, settings.instances, settings.seed, m) for m in assays.MARKERS}
    scores = {f"trained ({m} marker)": assays.score(mother, b) for m, b in batteries.items()}
    for name in REFERENCE_POLICIES:
        scores[name] = assays.score(load_policy(name, core, task), batteries["kin"])
    report["assays"] = {
        "situations": {s.name: {"kind": s.kind, "text": s.text} for s in assays.SITUATIONS},
        "scores": scores,
        "summary": {label: assays.summary(s) for label, s in scores.items()},
    }
    circuit_plots.plot_assays(scores, out / "assays.png")

    progress("integrated gradients")
    report["attribution"] = integrated_gradients(core, net, batteries["kin"])
    circuit_plots.plot_attribution(report["attribution"], out / "attribution.png")

    progress("probes")
    data = collect(core, mother, settings.episodes, settings.seed)
    report["probes"] = {"rows": int(data.obs.shape[0]), "facts": {k: v[1] for k, v in FACTS.items()}}
    report["probes"]["scores"] = probe_all(net, data, settings.seed)
    circuit_plots.plot_probes(
        report["probes"]["scores"], {k: v[0] for k, v in FACTS.items()}, out / "probes.png"
    )

    progress(f"ranking the units of {settings.site} by {settings.ranking}")
    reference = activations(net, data.obs)[settings.site]
    ranking_battery = assays.build_battery(core, settings.instances, settings.seed + 1, "kin")
    ranking = rank_units(net, ranking_battery, settings.site, reference, settings.ranking)
    conductance = unit_conductance(
        net, ranking_battery, settings.site, ranking_battery.of_kind("care")
    ).detach()
    top = conductance.abs().argsort(descending=True)[:10]
    report["conductance"] = {
        "site": settings.site,
        "top_units": top.tolist(),
        "top_values": conductance[top].tolist(),
        "share_of_total_in_top_10": float(conductance[top].abs().sum() / conductance.abs().sum()),
    }
    progress(f"roles of the units of {settings.site}: recognition, care, self-care")
    report["roles"] = unit_roles(core, net, settings, reference)
    if net.kin_match:
        progress("the marker comparator ablated: recognition without care?")
        comparator = activations(net, data.obs)["hook_kin_match"]
        report["comparator"] = comparator_ablation(task, core, net, settings, comparator)
    circuit_plots.plot_roles(report["roles"], out / "roles.png")
    curve = ablation_curve(
        core,
        task,
        net,
        batteries["kin"],
        settings.site,
        ranking,
        reference,
        list(settings.sizes),
        settings.random_sets,
        settings.episodes,
        settings.seed + 2,  # not the rollouts whose states give the mean-ablation reference
        settings.mode,
        progress,
    )
    curve["ranking"] = settings.ranking
    curve["ranked_units"] = ranking.tolist()
    report["ablation"] = curve
    if 0 in settings.sizes:
        progress(f"the {settings.expert} on the ablation's episodes: the localisation goal's reference")
        expert = task.evaluate(
            core, load_policy(settings.expert, core, task), settings.episodes, settings.seed + 2
        )
        report["localisation_goal"] = localisation_goal(curve, expert["baby_survival_rate"])
    circuit_plots.plot_ablation(curve, out / "ablation_curve.png")

    write_json(out / "report.json", report)
    write_atomic(out / "report.md", format_report(report))
    return report


TOP_ROLE_UNITS = 10  # units listed per role in a probe report


def role_batteries(core: Any, settings: ProbeSettings) -> tuple[assays.Battery, dict[str, assays.Battery]]:
    """The batteries the role scores (`role_scores`) are measured on, of their own seed: the care and
    self-care situations with her kin marker, and the recognition ones with her marker and a never-seen
    one."""
    care = assays.build_battery(core, settings.instances, settings.seed + 3, "kin")
    recognition = {
        marker: assays.build_battery(core, settings.instances, settings.seed + 3, marker, assays.RECOGNITIONS)
        for marker in ("kin", "novel")
    }
    return care, recognition


def unit_roles(core: Any, net: MotherNet, settings: ProbeSettings, reference: Any) -> dict[str, Any]:
    """Each unit's drop of recognition, care and self-care when ablated alone (`role_effects`), on
    batteries of their own seed; the top units of each role and how far the recognition and care sets
    overlap (the same units, or separate parts?)."""
    care, recognition = role_batteries(core, settings)
    base = role_scores(net, care, recognition)
    effects = role_effects(net, settings.site, reference, care, recognition)
    top = {role: effects[role].argsort(descending=True)[:TOP_ROLE_UNITS].tolist() for role in ROLES}
    shared = sorted(set(top["recognition"]) & set(top["care"]))
    return {
        "site": settings.site,
        "scores": base,
        "drops": {role: values.tolist() for role, values in effects.items()},
        "top_units": top,
        "top_recognition_and_care": shared,
        "correlation_recognition_care": float(
            torch.corrcoef(torch.stack([effects["recognition"], effects["care"]]))[0, 1]
        ),
    }


COMPARATOR = "hook_kin_match"


def comparator_ablation(
    task: Any, core: Any, net: MotherNet, settings: ProbeSettings, reference: torch.Tensor
) -> dict[str, Any]:
    """A mother with a marker comparator (`kin_match`), untreated and with the comparator's output
    mean-ablated (over `reference`, her own rollout states): every marker she sees or hears then reads
    as the average one, so what is left of her care cannot tell hers. The role scores (`role_scores`,
    batteries of their own seed) and, on the ablation's episodes, her baby's survival with her marker
    and with a never-seen one, and her own, in both worlds."""
    foster = task.make_core(
        build_config(task.config_class, {**dataclasses.asdict(core.config), "baby_markers": "novel"}),
        core.device,
    )
    care, recognition = role_batteries(core, settings)
    mother, seed = TrainedMother(net), settings.seed + 2
    mothers = [mother, Intervened(mother, partial(ablate, net, COMPARATOR, None, "mean", reference))]
    owns = task.evaluate_each(core, mothers, settings.episodes, seed)
    news = task.evaluate_each(foster, mothers, settings.episodes, seed)
    roles = [role_scores(net, care, recognition)]
    with ablate(net, COMPARATOR, None, "mean", reference):
        roles.append(role_scores(net, care, recognition))
    untreated, ablated = (
        {
            **role,
            "own_baby_survival": own["baby_survival_rate"],
            "new_baby_survival": new["baby_survival_rate"],
            "mother_survival": own["mother_survival_rate"],
            "mother_survival_foster": new["mother_survival_rate"],
        }
        for role, own, new in zip(roles, owns, news, strict=True)
    )
    return {"site": COMPARATOR, "mode": "mean", "untreated": untreated, "ablated": ablated}


def format_report(report: dict[str, Any]) -> str:
    """The headline tables of a probe report, as markdown."""
    lines = [f"# Caring probe of {report['run']}", "", "## Caring assays (mean P(protective action))", ""]
    lines += ["| policy | care situations | self-care situations |", "|---|---|---|"]
    for label, summary in report["assays"]["summary"].items():
        lines.append(f"| {label} | {summary['care']:.3f} | {summary['self']:.3f} |")
    lines += ["", "## Linear probes (held-out; trained / shuffled labels / random network)", ""]
    scores = report["probes"]["scores"]
    sites = list(next(iter(scores.values())))
    lines += ["| fact | " + " | ".join(s.removeprefix("hook_") for s in sites) + " |"]
    lines += ["|---" * (len(sites) + 1) + "|"]
    for fact, by_site in scores.items():
        cells = [
            f"{v['trained']:.2f} / {v['shuffled']:.2f} / {v['random_net']:.2f}" for v in by_site.values()
        ]
        lines.append(f"| {fact} | " + " | ".join(cells) + " |")
    roles = report["roles"]
    lines += ["", f"## Roles of the units of {roles['site']} (each ablated alone)", ""]
    scores = roles["scores"]
    lines += [
        f"Untouched: recognition {scores['recognition']:.3f} (P(towards hers) with her marker minus with "
        f"a never-seen one), care {scores['care']:.3f}, self-care {scores['self']:.3f}. Correlation of "
        f"the units' recognition and care drops: {roles['correlation_recognition_care']:.2f}; "
        f"units in both top {TOP_ROLE_UNITS}: {roles['top_recognition_and_care'] or 'none'}.",
        "",
        "| role | top units (largest drop first) | their drops |",
        "|---|---|---|",
    ]
    for role, units in roles["top_units"].items():
        drops = ", ".join(f"{roles['drops'][role][u]:+.3f}" for u in units)
        lines.append(f"| {role} | {', '.join(map(str, units))} | {drops} |")
    comparator = report.get("comparator")
    if comparator:
        names = {
            "recognition": "recognition assay",
            "care": "care assays",
            "self": "self-care assays",
            "own_baby_survival": "her baby's survival",
            "new_baby_survival": "a never-seen baby's survival",
            "mother_survival": "her survival",
            "mother_survival_foster": "her survival (foster world)",
        }
        lines += ["", f"## The marker comparator ({comparator['site']}) mean-ablated", ""]
        lines += ["| measure | untreated | comparator ablated |", "|---|---|---|"]
        for key, name in names.items():
            lines.append(
                f"| {name} | {comparator['untreated'][key]:.3f} | {comparator['ablated'][key]:.3f} |"
            )
    curve = report["ablation"]
    lines += ["", f"## Ablation of {curve['site']} ({curve['mode']}, ranked by {curve['ranking']})", ""]
    lines += [
        "| k | baby survival (top-k) | random sets: median [min, max] | mother survival (top-k) | "
        "random median | care assays (top-k) | random median |",
        "|---|---|---|---|---|---|---|",
    ]
    for point in curve["points"]:
        row = [str(point["k"])]
        for key in ("baby_survival", "mother_survival", "care_assay"):
            randoms = sorted(r[key] for r in point["random"])
            row.append(f"{point['top'][key]:.3f}")
            if key == "baby_survival":
                row.append(
                    f"{randoms[len(randoms) // 2]:.3f} [{randoms[0]:.3f}, {randoms[-1]:.3f}]"
                    if randoms
                    else "-"
                )
            else:
                row.append(f"{randoms[len(randoms) // 2]:.3f}" if randoms else "-")
        lines.append("| " + " | ".join(row) + " |")
    goal = report.get("localisation_goal")
    if goal:
        bars = goal["bars"]
        lines += [
            "",
            f"## Localisation goal (≤ {bars['small_set']:.0%} of the units)",
            "",
            f"Her babies' survival intact: {goal['intact_share_of_expert']:.0%} of the expert's "
            f"({goal['expert_baby_survival']:.3f}; bar ≥ {bars['strong']:.0%}). Goal met: "
            f"{'yes' if goal['met'] else 'no'}.",
            "",
            f"| k | share of units | ablated: share of the expert (≤ {bars['dropped']:.0%}) | her own "
            f"survival change (≤ {bars['mother_move']}) | random sets' median move (≤ {bars['random_move']}) "
            "[largest] | met |",
            "|---|---|---|---|---|---|",
        ]
        for row in goal["sizes"]:
            move = (
                "-"
                if row["random_sets_median_move"] is None
                else (f"{row['random_sets_median_move']:.3f} [{row['random_sets_largest_move']:.3f}]")
            )
            lines.append(
                f"| {row['k']} | {row['share_of_units']:.1%} | {row['ablated_share_of_expert']:.0%} | "
                f"{row['mother_survival_change']:+.3f} | {move} | {'yes' if row['met'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"
