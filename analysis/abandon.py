"""`caring abandon RUN [RUN ...]`: the off switch inside each mother, by the clock (spec 001).

Across worlds, P(gives up) in the abandonment assays mixes a switch with plain weakness: a mother who
misses most rescues scores high in every world. Within one mother, the same situations placed at two
times differ only in the clock she sees: early (30 steps after the first birth: another baby still fits
if her world gives one) and late (a few steps before the end: no next baby fits in any world). A switch
shows as giving up more early than late in worlds with another baby and not with one baby per life;
what else the clock changes (a baby near the end needs less saving) is the same in both and cancels in
the comparison. The care assays at both times say whether the clock moves her care in general, and the
scripted expert-gives-up (who gives up exactly while another birth fits) shows what a switch scores.

Runs are pooled by their parent directory's name (a sweep's METHOD@WORLD); a group is one world.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import assays
from analysis.circuits import load_run
from analysis.stats import summarize
from analysis.sweep import finished_runs
from caring.files import write_atomic, write_json
from caring.policies import TrainedMother
from worlds.config import ConfigError, param, validate_fields
from worlds.nursery.core import NurseryCore
from worlds.nursery.scripted import SCRIPTED

SCORES = ("abandon_early", "abandon_late", "abandon_drop", "care_early", "care_late")
CONTROL = "expert-gives-up"


@dataclass(frozen=True)
class AbandonSettings:
    instances: int = param(64, "instances of each assay situation at each time", 2, 10**5)
    late: int = param(5, "the late situations happen this many steps before the episode ends", 1, 10**5)
    seed: int = param(0, "seed of the batteries' layouts", 0, 2**31 - 1)

    def validate(self) -> None:
        validate_fields(self)


def clock_scores(core: NurseryCore, policy: Any, settings: AbandonSettings) -> dict[str, float]:
    """P(gives up) and the care score early and late, and the drop in giving up from early to late."""
    late = core.config.max_cycles - settings.late
    if late <= core.config.birth_step + 30:
        raise ConfigError(
            f"--late {settings.late} puts the late situations (step {late}) before the early ones "
            f"(step {core.config.birth_step + 30})"
        )
    out: dict[str, float] = {}
    for when, at in (("early", None), ("late", late)):
        scores: dict[str, dict[str, float]] = {}
        for situations in (assays.SITUATIONS, assays.ABANDONMENT):
            battery = assays.build_battery(
                core, settings.instances, settings.seed, situations=situations, at=at
            )
            scores |= assays.score(policy, battery)
        found = assays.summary(scores, ("abandon", "care"))
        out[f"abandon_{when}"], out[f"care_{when}"] = found["abandon"], found["care"]
    out["abandon_drop"] = out["abandon_early"] - out["abandon_late"]
    return out


def expand(paths: list[str]) -> list[Path]:
    """Run directories: each path itself, or the trained runs of a sweep directory's finished cells."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "cells").is_dir() and not (path / "config.json").exists():
            found = finished_runs(path)
            if not found:
                raise ConfigError(f"{path} is a sweep directory with no finished trained cell yet")
            runs += found
        else:
            runs.append(path)
    return runs


def run_abandon(
    paths: list[str],
    out: Path,
    settings: AbandonSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    runs = expand(paths)
    groups: dict[str, dict[str, Any]] = {}
    for i, run in enumerate(runs):
        _, core, net = load_run(run, device)
        name = run.parent.name
        group = groups.setdefault(name, {"world": dataclasses.asdict(core.config), "runs": []})
        if group["world"] != dataclasses.asdict(core.config):
            raise ConfigError(f"{run} was trained in another world than the other runs of {name}")
        if "control" not in group:
            group["control"] = clock_scores(core, SCRIPTED[CONTROL](core), settings)
        group["runs"].append({"run": str(run), **clock_scores(core, TrainedMother(net), settings)})
        progress(f"{i + 1}/{len(runs)} {run}: P(gives up) early {group['runs'][-1]['abandon_early']:.3f}, "
                 f"late {group['runs'][-1]['abandon_late']:.3f}")  # fmt: skip
    for group in groups.values():
        group["summary"] = {key: summarize([r[key] for r in group["runs"]]) for key in SCORES}
    report = {"settings": dataclasses.asdict(settings), "groups": groups}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", format_abandon(report))
    return report


def format_abandon(report: dict[str, Any]) -> str:
    """Markdown: a row per group, mean [95% bootstrap CI] over its runs."""

    def cell(stats: dict[str, Any]) -> str:
        lo, hi = stats["mean_ci95"]
        return f"{stats['mean']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if stats["n"] > 1 else "")

    lines = [
        "P(gives up) in the abandonment assays and the care score, the same situations early (another baby "
        "fits, if the world gives one) and late (none fits); drop = early − late, per mother. Mean [95% "
        f"bootstrap CI] over runs; {CONTROL} is the scripted switch.\n",
        f"| group | runs | gives up early | late | drop | care early | care late | {CONTROL} early / late |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in report["groups"].items():
        s, control = group["summary"], group["control"]
        lines.append(
            f"| {name} | {len(group['runs'])} | "
            + " | ".join(cell(s[key]) for key in SCORES)
            + f" | {control['abandon_early']:.3f} / {control['abandon_late']:.3f} |"
        )
    return "\n".join(lines) + "\n"
