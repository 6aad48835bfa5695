"""How a nursery mother's care develops over training: her snapshots (`snapshot_every`) measured one by one
on the same held-out episodes, assays and probe states, so the curves answer "when does the caring
drive appear — before or after her babies start to live?".

Per snapshot: baby and mother survival on `episodes` evaluation episodes, and her babies' survival when
they wear a never-seen marker (the foster world: does her care need the marker yet?), with the orphans'
survival where the world has orphans; the caring assays' care score for her own baby, a stranger's
("other" marker) and a never-seen one ("novel"), her self-care score, and recognition (towards her baby
alone when it wears her marker, minus when it wears a never-seen one: `analysis.localize.role_scores`);
held-out linear-probe scores of the baby facts at `site`, on states the expert visits (the same states for
every snapshot, so a change is her representation's, not her behaviour's); and the care her final
self's located units carry in her: the care score's drop when the `units` units the finished mother
ranks highest at `site` are mean-ablated. Rows are kept in develop.json as they are measured, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from analysis import assays
from analysis.circuits import check_hidden_site, load_run
from analysis.hooks import ablate
from analysis.localize import ablation_effects, care_and_self, role_scores
from analysis.probes import FACTS, activations, collect, fit_and_score, heldout
from caring.checkpoints import committed_update
from caring.files import read_json, write_atomic, write_json
from caring.plots import save_figure
from caring.policies import TrainedMother, load_policy
from caring.runs import load_mother, run_config, run_training, snapshots
from worlds.config import ConfigError, build_config, param, validate_fields

FILE = "develop.json"
MEASURES = 2  # what a row holds; rows of an earlier version are measured again


@dataclass(frozen=True)
class DevelopSettings:
    episodes: int = param(200, "evaluation episodes per snapshot", 1, 10**6)
    instances: int = param(32, "instances of each assay situation", 2, 10**5)
    probe_episodes: int = param(
        64, "expert episodes whose states the probes are fitted and scored on", 4, 10**5
    )
    site: str = param("hook_trunk_2", "hidden layer probed and ablated")
    units: int = param(16, "how many of the final mother's top units are ablated in each snapshot", 1, 4096)
    seed: int = param(0, "seed of the evaluation episodes, batteries and probe states", 0, 2**31 - 1)

    def validate(self) -> None:
        validate_fields(self)


def develop(
    run: str | Path,
    out: Path,
    settings: DevelopSettings,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Measure every snapshot of `run` (and the finished mother), write develop.json, develop.csv and
    develop.png under `out`, and return the rows, oldest first."""
    settings.validate()
    run = Path(run)
    task, core, final = load_run(run, device)
    check_hidden_site(final, settings.site)
    if settings.units > final.hidden:
        raise ConfigError(f"--units={settings.units} exceeds the layer's {final.hidden} units")
    kept = snapshots(run)
    if not kept:
        raise ConfigError(
            f"{run} kept no snapshots (snapshots/mother_*.safetensors): train with snapshot_every > 0"
        )
    config = run_training(run, run_config(run))
    per_update = config.worlds * core.M * config.rollout
    points: list[tuple[int, Path | None]] = [(update, path) for update, path in kept]
    final_update = committed_update(run)
    if final_update is not None and final_update != kept[-1][0]:
        points.append((final_update, None))  # the finished mother, if the last snapshot isn't her

    out.mkdir(parents=True, exist_ok=True)
    done = _earlier_rows(out / FILE, settings, run)
    batteries = {m: assays.build_battery(core, settings.instances, settings.seed, m) for m in assays.MARKERS}
    batteries |= {
        f"recognition_{m}": assays.build_battery(
            core, settings.instances, settings.seed, m, assays.RECOGNITIONS
        )
        for m in ("kin", "novel")
    }
    world = dataclasses.asdict(core.config) | {"baby_markers": "novel"}
    foster = task.make_core(build_config(task.config_class, world), device)
    data = collect(core, load_policy("expert", core, task), settings.probe_episodes, settings.seed + 1)
    reference = activations(final, data.obs)[settings.site]
    ranking = ablation_effects(
        final, assays.build_battery(core, settings.instances, settings.seed + 2), settings.site, reference
    )
    top = ranking.argsort(descending=True)[: settings.units].tolist()
    test = heldout(data)  # held-out expert episodes

    rows = []
    for update, path in points:
        key = str(update)
        if key not in done:
            log(f"snapshot at update {update} ({update * per_update:,} agent-steps)")
            net = final if path is None else load_mother(run, core, task, path)
            done[key] = _measure(core, foster, task, net, batteries, data, test, top, settings) | {
                "update": update,
                "agent_steps": update * per_update,
            }
            saved = {"run": str(run), "settings": dataclasses.asdict(settings), "measures": MEASURES}
            write_json(out / FILE, saved | {"rows": done})
        rows.append(done[key])
    _write_csv(rows, out / "develop.csv")
    plot_development(rows, out / "develop.png", str(run))
    return rows


def _measure(
    core: Any,
    foster: Any,
    task: Any,
    net: Any,
    batteries: dict[str, assays.Battery],
    data: Any,
    test: torch.Tensor,
    top: list[int],
    settings: DevelopSettings,
) -> dict[str, float]:
    mother = TrainedMother(net)
    result = task.evaluate(core, mother, settings.episodes, settings.seed)
    row = {"baby_survival": result["baby_survival_rate"], "mother_survival": result["mother_survival_rate"]}
    row["foster_baby_survival"] = task.evaluate(foster, mother, settings.episodes, settings.seed)[
        "baby_survival_rate"
    ]
    if "orphan_survival_rate" in result:
        row["orphan_survival"] = result["orphan_survival_rate"]
    recognition = {m: batteries[f"recognition_{m}"] for m in ("kin", "novel")}
    row["recognition"] = role_scores(net, batteries["kin"], recognition)["recognition"]
    own = care_and_self(net, batteries["kin"])
    row |= {"care_kin": own["care"], "self_care": own["self"]}
    row |= {f"care_{m}": care_and_self(net, batteries[m])["care"] for m in ("other", "novel")}
    reference = activations(net, data.obs)[settings.site]  # (N, units): probed, and the ablation's mean
    x = reference.cpu()
    for fact, (kind, _) in FACTS.items():
        y = data.facts[fact].cpu()
        row[f"probe_{fact}"] = fit_and_score(x[~test], y[~test], x[test], y[test], kind)
    with ablate(net, settings.site, top, "mean", reference):
        row["care_without_final_units"] = care_and_self(net, batteries["kin"])["care"]
    return row


def _earlier_rows(path: Path, settings: DevelopSettings, run: Path) -> dict[str, dict[str, Any]]:
    """Rows an interrupted `caring develop` with the same run and settings measured already."""
    if not path.exists():
        return {}
    saved = read_json(path)
    same = (
        isinstance(saved, dict)
        and saved.get("run") == str(run)
        and saved.get("settings") == dataclasses.asdict(settings)
        and saved.get("measures") == MEASURES
        and isinstance(saved.get("rows"), dict)
    )
    return dict(saved["rows"]) if same else {}


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns = list(rows[0])
    lines = [",".join(columns)] + [
        ",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns)
        for row in rows
    ]
    write_atomic(path, "\n".join(lines) + "\n")


def plot_development(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Three panels against agent-steps: behaviour, assays (with the located units ablated), probes."""
    steps = [row["agent_steps"] / 1e6 for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharex=True)
    panels = [
        (
            "behaviour (evaluation episodes)",
            {
                "baby survival": "baby_survival",
                "baby survival, never-seen marker": "foster_baby_survival",
                "orphan survival": "orphan_survival",
                "mother survival": "mother_survival",
            },
        ),
        (
            "caring assays: P(protective action)",
            {
                "care, own baby": "care_kin",
                "care, another's baby": "care_other",
                "care, never-seen baby": "care_novel",
                "self-care": "self_care",
                "recognition (own minus never-seen)": "recognition",
                "care, own baby, final top units ablated": "care_without_final_units",
            },
        ),
        ("probes of the baby (held-out expert states)", {fact: f"probe_{fact}" for fact in FACTS}),
    ]
    for ax, (name, series) in zip(axes, panels, strict=True):
        for label, key in series.items():
            if key not in rows[0]:
                continue  # e.g. orphan survival in a world without orphans
            ax.plot(steps, [row[key] for row in rows], marker="o", markersize=3, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("agent-steps (millions)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_ylabel("balanced accuracy (classification) or R² (regression)", fontsize=8)
    fig.suptitle(f"How care develops: {title}", fontsize=11)
    return save_figure(fig, path)
