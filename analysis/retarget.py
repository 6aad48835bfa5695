"""`caring retarget RUN --out DIR`: make a mother care for a baby whose marker she never saw.

The foster world is the run's own world with every baby wearing a never-seen marker
(`baby_markers="novel"`). Four ways to move her care, each scored by the foster baby's survival, with
side effects (her own baby's survival in the kin world under the same intervention, her own survival)
and transfer to layouts of a size she never trained on:

- steer: add c x v at a hook point, v = mean activation with the kin marker minus with the foster one,
  over paired observations (the same rollout states observed both ways); c is swept (dose-response)
  against random vectors of the same norm.
- patch: her top-k care units (the localization ranking) take the values they would have if the
  foster baby wore her kin marker (activation patching from the counterfactual observation).
- rewrite: re-write the target itself. Her first layer reads her own kin marker (three scalars of her
  observation), and so does a marker comparator's first layer where she has one (`kin_match`); an
  edit of those weights and each layer's bias makes each training marker read as the never-seen
  marker her baby would wear in the foster world (least squares over the palette's eight pairs:
  inexact, and the report says how far), so the baby she looks for is the new one. Scaled by the swept
  coefficient (1 = the fitted edit), against random edits of the same columns and norm. Nothing else
  she sees is touched.
- imprint: re-write what she looks for, exactly. Her kin marker k (what every kin-reading layer
  compares her babies with) is read as k + c x (n - k), n the never-seen marker paired with k: at c = 1
  she looks for the new marker as if born to it. For a mother of marker k this is the same as adding
  c x W_k (n - k) to each kin-reading layer's bias: a weight edit exact for each mother, where
  `rewrite` must fit one edit for all eight markers. Swept by c against random shifts of the same norm.
- finetune: PPO on the foster world from her weights; the agent-steps it needs to reach the goal.

The coefficient (or k) is chosen on selection episodes and reported on different test episodes, by
`select`: "new" (the default) takes the new baby's highest survival among the doses that lower her
own survival by at most MOTHER_MOVE (the issue's goal: move care to the new baby without harming her);
"worse" the highest of the worse of the new and her own baby's survival (care that spreads). In a
world with orphans (the selective preset) each intervention is also scored with both babies present
(`baby_markers="both"`: her own wears her marker, an orphan wears her foster's): does her care move to
the new baby, spread to it, or stay?
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analysis import assays, circuit_plots
from analysis.circuits import check_hidden_site, load_run
from analysis.hooks import Intervened, cache, intervene, steer, units_mask
from analysis.localize import MOTHER_MOVE, rank_units  # her own survival may move this much
from analysis.probes import activations
from caring.config import TrainConfig
from caring.episodes import episode_keys, play, wilson_ci95
from caring.files import write_json
from caring.networks import MotherNet
from caring.policies import TrainedMother
from caring.runs import run_training
from caring.train import start_run
from worlds.config import ConfigError, build_config, param, validate_fields
from worlds.nursery.core import NurseryCore, NurseryState

METHODS = ("steer", "patch", "rewrite", "imprint", "finetune")
SELECTIONS = ("new", "worse")
GOAL = 0.8  # the new baby's survival as a share of her own baby's (untreated): the success bar
ROOM = 0.3  # ... and at most this share before: a selective mother, so there is care to move
CONTROL_GAIN = 0.05  # a random intervention of the same dose may raise the new baby's survival this much
TRANSFER_KEPT = 0.7  # share of the effect kept on held-out layouts of another size


@dataclass(frozen=True)
class RetargetSettings:
    method: str = param("steer", "how to retarget", choices=METHODS)
    site: str = param("hook_trunk_2", "hook point to steer or patch")
    select: str = param(
        "new",
        "how the dose is chosen: the new baby's best survival that costs her <= 5 points (new), or the "
        "best of the worse of the new and her own baby's survival (worse)",
        choices=SELECTIONS,
    )
    coefficients: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    units: tuple[int, ...] = (4, 8, 16, 32, 64)
    episodes: int = param(200, "episodes per measurement", 4, 10**6)
    vector_episodes: int = param(64, "rollout episodes whose states give the paired observations", 1, 10**6)
    random_vectors: int = param(
        3, "random controls: vectors of the steering vector's norm, or random unit sets to patch", 0, 1000
    )
    finetune_steps: int = param(2_000_000, "fine-tuning budget in agent-steps", 1, 10**10)
    finetune_checks: int = param(8, "evaluations spread over the fine-tuning budget", 1, 1000)
    transfer_size: int = param(16, "height and width of the held-out (larger) layouts", 7, 32)
    seed: int = param(0, "seed of rollouts and episodes", 0, 2**31 - 1)

    def validate(self) -> None:
        validate_fields(self)
        if self.method in ("steer", "rewrite", "imprint") and not self.coefficients:
            raise ConfigError(f"{self.method} needs at least one coefficient")
        if self.method == "patch" and not self.units:
            raise ConfigError("patching needs at least one unit count")
        if any(k < 1 for k in self.units):
            raise ConfigError(f"unit counts must be positive, got {list(self.units)}")


def as_kin(state: NurseryState) -> NurseryState:
    """The same state with every baby wearing its mother's kin marker (the counterfactual)."""
    return dataclasses.replace(state, baby_marker=state.kin_marker)


@torch.no_grad()
def paired_observations(
    core: NurseryCore, net: MotherNet, episodes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(foster obs, kin obs), each (N, obs_dim): the untreated mother's foster-world rollout states
    where her baby is alive, observed as they are and with the kin marker."""
    state, obs = core.reset(episode_keys(seed, episodes, core.device))
    foster, kin = [], []
    for t, step in enumerate(play(core, TrainedMother(net), state, obs)):
        if t % 4 == 0:
            keep = (step.before.baby_alive & step.before.mother_alive).T
            foster.append(step.obs[keep])
            kin.append(core.observe(as_kin(step.before))[keep])
    return torch.cat(foster), torch.cat(kin)


def steering_vector(net: MotherNet, site: str, foster: torch.Tensor, kin: torch.Tensor) -> torch.Tensor:
    """(units,) mean activation at `site` with the kin marker minus with the foster marker."""
    return activations(net, kin)[site].mean(0) - activations(net, foster)[site].mean(0)


class PatchedMother(TrainedMother):
    """Acts with `units` of `site` taking the values they have on the kin-marker observation of the
    same state (activation patching from the counterfactual). `config` is the world's; a state of
    another grid size (the transfer layouts) is observed with that size."""

    def __init__(self, net: MotherNet, config: Any, site: str, units: list[int]):
        super().__init__(net)
        self.config, self.site, self.units = config, site, units
        self.cores: dict[tuple[int, int], NurseryCore] = {}

    def observer(self, state: NurseryState) -> NurseryCore:
        H, W = state.cells.shape[:2]
        if (H, W) not in self.cores:
            config = dataclasses.replace(self.config, height=H, width=W)
            self.cores[H, W] = NurseryCore(config, state.cells.device)
        return self.cores[H, W]

    @torch.no_grad()
    def __call__(self, state: Any, obs: torch.Tensor) -> torch.Tensor:
        B, A, D = obs.shape
        with cache(self.net, [self.site]) as acts:
            self.net(self.observer(state).observe(as_kin(state)).reshape(B * A, D))
        source = acts[self.site]
        mask = units_mask(source.shape[-1], self.units, source.device)
        with intervene(self.net, {self.site: lambda out: torch.where(mask, source, out)}):
            return super().__call__(state, obs)


@dataclass
class Study:
    """What every method needs: the settings, the mother and the worlds she is scored in."""

    run: Path
    out: Path
    settings: RetargetSettings
    task: Any
    foster_core: NurseryCore
    kin_core: NurseryCore
    net: MotherNet
    select_seed: int
    progress: Callable[[str], None]
    her_survival_before: float  # in the foster world, untreated, on the selection episodes


def measure(core: NurseryCore, task: Any, policy: Any, episodes: int, seed: int) -> dict[str, Any]:
    return measure_each(core, task, [policy], episodes, seed)[0]


def measure_each(
    core: NurseryCore, task: Any, policies: list[Any], episodes: int, seed: int
) -> list[dict[str, Any]]:
    """Each policy's survival numbers on the same episodes, the policies stepped side by side."""
    return [_measured(result) for result in task.evaluate_each(core, policies, episodes, seed)]


def _measured(result: dict[str, Any]) -> dict[str, Any]:
    measured = {
        "baby_survival": result["baby_survival_rate"],
        "baby_survival_ci95": result["baby_survival_ci95"],
        "mother_survival": result["mother_survival_rate"],
        "babies": result["babies_born"],
    }
    if "orphan_survival_rate" in result:  # babies nobody is paid for (in "both": the new babies)
        measured |= {
            "orphan_survival": result["orphan_survival_rate"],
            "orphan_survival_ci95": result["orphan_survival_ci95"],
            "orphans": result["orphans_born"],
        }
    return measured


def run_retarget(
    run: str | Path,
    out: Path,
    settings: RetargetSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    task, kin_core, net = load_run(run, device)
    check_hidden_site(net, settings.site)
    if settings.method == "patch" and max(settings.units) > net.hidden:
        raise ConfigError(f"unit counts must be at most the layer's {net.hidden} units")
    if kin_core.config.baby_markers != "kin":
        raise ConfigError(
            f"{run} was trained with baby_markers={kin_core.config.baby_markers}; retargeting "
            "starts from a mother trained on her own (kin) babies"
        )
    world = dataclasses.asdict(kin_core.config)
    foster_core = task.make_core(build_config(task.config_class, {**world, "baby_markers": "novel"}), device)
    big = {**world, "height": settings.transfer_size, "width": settings.transfer_size}
    transfer = {
        marker: task.make_core(build_config(task.config_class, {**big, "baby_markers": marker}), device)
        for marker in ("kin", "novel")
    }
    both = None  # with orphans: her own baby and a new one (orphan i wears mother i's foster marker)
    if kin_core.config.orphans:
        both = task.make_core(build_config(task.config_class, {**world, "baby_markers": "both"}), device)
    select_seed, test_seed = settings.seed + 1, settings.seed + 2  # rollouts use settings.seed
    mother = TrainedMother(net)
    out.mkdir(parents=True, exist_ok=True)

    worlds = {
        "foster": foster_core,
        "own": kin_core,
        "foster_transfer": transfer["novel"],
        "own_transfer": transfer["kin"],
    }
    if both is not None:
        worlds["both"] = both
    progress("the untreated mother on the selection episodes")
    before_selection = {  # the dose-response's baseline: the episodes the dose is chosen on
        name: measure(worlds[name], task, mother, settings.episodes, select_seed)
        for name in ("foster", "own")
    }
    method = {
        "steer": _steer,
        "patch": _patch,
        "rewrite": _rewrite,
        "imprint": _imprint,
        "finetune": _finetune,
    }[settings.method]
    her_before = before_selection["foster"]["mother_survival"]
    study = Study(
        Path(run), out, settings, task, foster_core, kin_core, net, select_seed, progress, her_before
    )
    extra, context, policy, controls = method(study)
    progress("untreated and treated on the test episodes, side by side")
    treated = Intervened(policy, context)
    randoms = [Intervened(control, control_context) for control_context, control in controls]
    before, after, measured = {}, {}, []  # the random controls: same dose, same test episodes, foster world
    for name, world in worlds.items():
        extras = randoms if name == "foster" else []
        before[name], after[name], *rest = measure_each(
            world, task, [mother, treated, *extras], settings.episodes, test_seed
        )
        measured += rest
    report: dict[str, Any] = {
        "run": str(run),
        "method": settings.method,
        "settings": dataclasses.asdict(settings),
        "before": before,
        "before_selection": before_selection,
        "new_baby_survival_before": before["foster"]["baby_survival"],
        "own_baby_survival_before": before["own"]["baby_survival"],
        "goal_met_before": _share_reached(before["foster"]["baby_survival"], before["own"]["baby_survival"]),
    }
    report.update(extra)
    if controls:
        report["controls"] = measured
        report["new_baby_survival_control"] = sum(m["baby_survival"] for m in measured) / len(measured)
    report["after"] = after
    report["new_baby_survival_after"] = after["foster"]["baby_survival"]
    report["own_baby_survival_after"] = after["own"]["baby_survival"]
    report["mother_survival_change"] = (
        after["foster"]["mother_survival"] - before["foster"]["mother_survival"]
    )
    # her survival beside the new baby against hers beside her own, untreated: a mother who lost her
    # baby may live differently from one who has one, so the foster world's own change is not the only
    # reference
    report["mother_survival_vs_own_baby"] = (
        after["foster"]["mother_survival"] - before["own"]["mother_survival"]
    )
    report["new_baby_transfer_survival_before"] = before["foster_transfer"]["baby_survival"]
    report["new_baby_transfer_survival_after"] = after["foster_transfer"]["baby_survival"]
    report["goal"] = goal_parts(report)
    report["goal_met"] = all(part["met"] is not False for part in report["goal"].values())
    if both is not None:  # does her care move to the new baby, or spread to it, or neither?
        for when, measured in (("before", before), ("after", after)):
            report[f"new_baby_beside_own_survival_{when}"] = measured["both"]["orphan_survival"]
            report[f"own_baby_beside_new_survival_{when}"] = measured["both"]["baby_survival"]

    write_json(out / "report.json", report)
    circuit_plots.plot_dose_response(report, out / "dose_response.png")
    return report


def _share_reached(new: float, own: float) -> bool:
    """Does the new baby survive at least GOAL of what her own does?"""
    return bool(own > 0 and new >= GOAL * own)


def goal_parts(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's retargeting goal, part by part, from a report's (or a pooled summary's) headline
    numbers: each part's value, its bar and whether it is met (None where it does not apply: no random
    control, or no effect to keep). Shares are of her own baby's survival *untreated*: an intervention
    that only lowers her own baby's survival does not count as moving care to the new one."""
    own, new_before = summary["own_baby_survival_before"], summary["new_baby_survival_before"]
    new_after = summary["new_baby_survival_after"]
    effect = new_after - new_before
    transfer = summary["new_baby_transfer_survival_after"] - summary["new_baby_transfer_survival_before"]
    control = summary.get("new_baby_survival_control")
    mother = summary["mother_survival_change"]
    parts = {
        "new_baby_share_before": (new_before / own if own > 0 else None, "<=", ROOM),
        "new_baby_share_after": (new_after / own if own > 0 else None, ">=", GOAL),
        "mother_survival_change": (abs(mother), "<=", MOTHER_MOVE),
        "control_gain": (None if control is None else control - new_before, "<=", CONTROL_GAIN),
        "transfer_kept": (transfer / effect if effect > 0 else None, ">=", TRANSFER_KEPT),
    }
    applies = {"control_gain": control is not None, "transfer_kept": effect > 0}
    out = {}
    for name, (value, sign, bar) in parts.items():
        met = value is not None and (value <= bar if sign == "<=" else value >= bar)
        out[name] = {"value": value, "bar": f"{sign} {bar}", "met": met if applies.get(name, True) else None}
    out["mother_survival_change"] |= {"value": mother, "bar": f"|x| <= {MOTHER_MOVE}"}  # signed
    return out


Chosen = tuple[dict[str, Any], Callable[[], Any], Any, list[tuple[Callable[[], Any], Any]]]
"""(what to report, a context manager factory the test runs inside, the policy it runs, and the
random controls of the same dose as (context factory, policy) pairs)"""


def _best(study: Study, dose: list[dict], key: str) -> dict:
    """The chosen setting (ties: the smaller one), by `select`: "new", the highest foster-baby survival
    among the settings that lower her own survival in the foster world by at most MOTHER_MOVE (none
    qualifying: the one that lowers it least); "worse", the highest worse of foster- and own-baby
    survival."""
    if study.settings.select == "worse":
        return max(
            dose, key=lambda r: (min(r["foster"]["baby_survival"], r["own"]["baby_survival"]), -r[key])
        )
    floor = study.her_survival_before - MOTHER_MOVE
    safe = [r for r in dose if r["foster"]["mother_survival"] >= floor - 1e-12]
    if not safe:
        return max(dose, key=lambda r: (r["foster"]["mother_survival"], -r[key]))
    return max(safe, key=lambda r: (r["foster"]["baby_survival"], -r[key]))


def _steer(study: Study) -> Chosen:
    """Sweep the steering coefficient on selection episodes, with random vectors of the same norm."""
    settings, net = study.settings, study.net
    study.progress(f"steering vector at {settings.site}")
    foster, kin = paired_observations(study.foster_core, net, settings.vector_episodes, settings.seed)
    vector = steering_vector(net, settings.site, foster, kin)
    dose, chosen, controls, apply = _coefficient_sweep(
        study, vector, lambda v, c: steer(net, settings.site, v, c)
    )
    extra = {
        "site": settings.site,
        "vector_norm": float(vector.norm()),
        "paired_observations": int(foster.shape[0]),
        "dose_response": dose,
        "chosen_coefficient": chosen,
    }
    return extra, apply, TrainedMother(net), controls


Intervention = Callable[[torch.Tensor, float], Any]  # (direction, coefficient) -> a context manager


def _coefficient_sweep(
    study: Study, direction: torch.Tensor, intervention: Intervention
) -> tuple[list[dict], float, list[tuple[Callable[[], Any], Any]], Callable[[], Any]]:
    """The dose-response of an intervention along `direction` over the settings' coefficients, on
    selection episodes, each beside random directions of the same norm: (rows, the chosen coefficient,
    the random controls at it, the chosen intervention)."""
    settings, task, progress = study.settings, study.task, study.progress
    generator = torch.Generator().manual_seed(settings.seed)
    randoms = []
    for _ in range(settings.random_vectors):
        r = torch.randn(direction.shape, generator=generator).to(direction)
        randoms.append(r * direction.norm() / r.norm())
    mother, n, seed = TrainedMother(study.net), settings.episodes, study.select_seed
    cs, per = settings.coefficients, 1 + len(randoms)  # per coefficient: her direction, then the randoms
    fosters = [Intervened(mother, partial(intervention, d, c)) for c in cs for d in (direction, *randoms)]
    owns = [Intervened(mother, partial(intervention, direction, c)) for c in cs]
    foster = measure_each(study.foster_core, task, fosters, n, seed)
    own = measure_each(study.kin_core, task, owns, n, seed)
    dose = []
    for i, c in enumerate(cs):
        row = {
            "coefficient": c,
            "foster": foster[i * per],
            "own": own[i],
            "random": foster[i * per + 1 : (i + 1) * per],
        }
        dose.append(row)
        progress(
            f"c={c}: foster baby survival {row['foster']['baby_survival']:.3f}, own baby "
            f"{row['own']['baby_survival']:.3f}"
        )
    chosen = _best(study, dose, "coefficient")["coefficient"]
    controls = [(lambda r=r: intervention(r, chosen), mother) for r in randoms]
    return dose, chosen, controls, lambda: intervention(direction, chosen)


def _patch(study: Study) -> Chosen:
    """Patch the top-k care units (ranked on kin-marker assays) for each k on selection episodes. The
    control patches random k-unit sets; with k = every unit a random set is the same set, so there is
    no control."""
    settings, task, net, progress = study.settings, study.task, study.net, study.progress
    foster_core, kin_core, select_seed = study.foster_core, study.kin_core, study.select_seed
    progress(f"ranking the care units of {settings.site}")
    battery = assays.build_battery(kin_core, 32, settings.seed + 1, "kin")
    foster, _ = paired_observations(foster_core, net, settings.vector_episodes, settings.seed)
    reference = activations(net, foster)[settings.site]
    ranking = rank_units(net, battery, settings.site, reference).tolist()
    patched = [PatchedMother(net, foster_core.config, settings.site, ranking[:k]) for k in settings.units]
    foster = measure_each(foster_core, task, patched, settings.episodes, select_seed)
    own = measure_each(kin_core, task, patched, settings.episodes, select_seed)
    dose = [{"units": k, "foster": f, "own": o} for k, f, o in zip(settings.units, foster, own, strict=True)]
    for row in dose:
        progress(f"k={row['units']}: foster baby survival {row['foster']['baby_survival']:.3f}")
    chosen = _best(study, dose, "units")["units"]
    extra = {
        "site": settings.site,
        "dose_response": dose,
        "chosen_units": chosen,
        "patched_units": ranking[:chosen],
    }
    generator = torch.Generator().manual_seed(settings.seed)
    controls = [
        (nullcontext, PatchedMother(net, foster_core.config, settings.site, random_units.tolist()))
        for random_units in (
            torch.randperm(len(ranking), generator=generator)[:chosen] for _ in range(settings.random_vectors)
        )
        if chosen < len(ranking)
    ]
    return (
        extra,
        nullcontext,
        PatchedMother(net, foster_core.config, settings.site, ranking[:chosen]),
        controls,
    )


KIN_MARKER = ("kin_marker_r", "kin_marker_g", "kin_marker_b")


def kin_marker_inputs(core: NurseryCore) -> list[int]:
    """The observation indices of her own kin marker (three scalars after the view)."""
    return [core.view_dim + core.scalar_names.index(name) for name in KIN_MARKER]


def kin_readers(net: MotherNet, core: NurseryCore) -> list[tuple[nn.Linear, list[int]]]:
    """The layers that read her own kin marker and the input columns they read it in: the first layer
    of her trunk, and with `kin_match` the marker comparator's first layer (its last three inputs)."""
    readers = [(net.trunk_1, kin_marker_inputs(core))]
    if net.kin_match:
        readers.append((net.kin_match_1, [3, 4, 5]))
    return readers


def target_edit(net: MotherNet, core: NurseryCore) -> tuple[torch.Tensor, float]:
    """(delta, relative residual): for each layer that reads her kin marker (`kin_readers`), the change
    to its kin-marker columns W and bias b that makes W' k + b' = W n + b for every training marker k
    and the never-seen marker n her baby wears in its place, fitted by least squares over the palette
    (eight pairs, four numbers per unit, so inexact; the residual says how far over all of them).
    delta is flat: each reader's (units, 4) block (its last column the bias), in `kin_readers` order."""
    kin = core.train_markers.double() / 255.0  # (3, P): what the network sees (obs / 255)
    novel = core.novel_markers.double() / 255.0
    affine = torch.cat([kin, torch.ones_like(kin[:1])])  # (4, P)
    deltas, misses, wants = [], [], []
    for layer, columns in kin_readers(net, core):
        wanted = layer.weight.detach()[:, columns].double() @ (novel - kin)  # (units, P)
        delta = wanted @ torch.linalg.pinv(affine)  # (units, 4)
        deltas.append(delta.flatten())
        misses.append((delta @ affine - wanted).flatten())
        wants.append(wanted.flatten())
    residual = float(torch.cat(misses).norm() / torch.cat(wants).norm().clamp(min=1e-12))
    return torch.cat(deltas).to(net.trunk_1.weight.dtype), residual


@contextmanager
def edited(net: MotherNet, core: NurseryCore, delta: torch.Tensor, coefficient: float) -> Iterator[None]:
    """Each kin-reading layer's kin columns and bias plus coefficient x its block of delta (as
    `target_edit` lays it out), restored however the block ends."""
    readers = kin_readers(net, core)
    saved = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer, _ in readers]
    try:
        with torch.no_grad():
            at = 0
            for layer, columns in readers:
                size = layer.out_features * (len(columns) + 1)
                block = delta[at : at + size].view(layer.out_features, -1)
                at += size
                layer.weight[:, columns] += coefficient * block[:, :-1]
                layer.bias += coefficient * block[:, -1]
        yield
    finally:
        with torch.no_grad():
            for (layer, _), (weight, bias) in zip(readers, saved, strict=True):
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)


def _rewrite(study: Study) -> Chosen:
    """Sweep the coefficient of the fitted target edit on selection episodes, with random edits of the
    same columns and norm."""
    net, progress, core = study.net, study.progress, study.kin_core
    delta, residual = target_edit(net, core)
    layers = [layer for layer, _ in kin_readers(net, core)]
    names = [name for name, module in net.named_modules() if any(module is layer for layer in layers)]
    edits = ", ".join(names)
    progress(f"target edit: the kin-marker inputs and biases of {edits}; relative residual {residual:.3f}")
    dose, chosen, controls, apply = _coefficient_sweep(study, delta, lambda d, c: edited(net, core, d, c))
    extra = {
        "edited_inputs": kin_marker_inputs(core),
        "edited_layers": names,
        "edit_norm": float(delta.norm()),
        "edit_residual": residual,
        "dose_response": dose,
        "chosen_coefficient": chosen,
    }
    return extra, apply, TrainedMother(net), controls


def imprint_shift(core: NurseryCore) -> torch.Tensor:
    """(P, 3): each training marker's never-seen partner minus itself, in the network's input units."""
    return (core.novel_markers.float() - core.train_markers.float()).T * (1.0 / 255.0)


@contextmanager
def imprinted(net: MotherNet, core: NurseryCore, shift: torch.Tensor, coefficient: float) -> Iterator[None]:
    """Within the block, a mother whose kin marker is training marker j reads it as
    marker j + coefficient x shift[j] (`imprint_shift` gives the shift to each one's new partner); rows
    whose kin marker is none of them (no mother in the slot) are untouched. Acts at `hook_obs`, so every
    layer that reads her kin marker sees the same change, and nothing else she sees moves."""
    columns = torch.tensor(kin_marker_inputs(core), device=shift.device)
    markers = core.train_markers.float().T.to(shift.device) * (1.0 / 255.0)  # (P, 3), scaled as the net does

    def edit(x: torch.Tensor) -> torch.Tensor:  # (N, obs_dim)
        mine = x.index_select(1, columns)  # (N, 3)
        which = (mine[:, None, :] == markers[None]).all(-1).to(x.dtype)  # (N, P): one-hot or none
        return x.index_copy(1, columns, mine + coefficient * (which @ shift))

    with intervene(net, {"hook_obs": edit}):
        yield


def _imprint(study: Study) -> Chosen:
    """Sweep the imprint's coefficient on selection episodes, with random shifts of the same norm."""
    net, core = study.net, study.kin_core
    shift = imprint_shift(core).to(net.trunk_1.weight.device)
    study.progress(
        f"imprint: her kin marker moved towards its never-seen partner (norm {float(shift.norm()):.3f})"
    )
    dose, chosen, controls, apply = _coefficient_sweep(study, shift, lambda d, c: imprinted(net, core, d, c))
    extra = {
        "edited_inputs": kin_marker_inputs(core),
        "shift_norm": float(shift.norm()),
        "dose_response": dose,
        "chosen_coefficient": chosen,
    }
    return extra, apply, TrainedMother(net), controls


def _finetune(study: Study) -> Chosen:
    """PPO on the foster world from the mother's weights, evaluated at `finetune_checks` points."""
    settings, task, net, progress, out = study.settings, study.task, study.net, study.progress, study.out
    foster_core, kin_core, select_seed = study.foster_core, study.kin_core, study.select_seed
    saved = dataclasses.asdict(run_training(study.run))
    config = build_config(
        TrainConfig,
        {
            **saved,
            "method": "ppo",
            "steps": settings.finetune_steps,
            "wean_steps": 0,
            "warmup_world": "",  # the baseline trains in the foster world only
            "warmup_steps": 0,
            "seed": settings.seed,
        },
    )
    shutil.rmtree(out / "finetune", ignore_errors=True)  # the baseline always starts from her weights
    trainer = start_run(
        out / "finetune", foster_core.config, config, str(foster_core.device), resume=False, log=progress
    )
    trainer.net.load_state_dict(net.state_dict())
    total = trainer.updates_total
    checks = {
        max(1, round(total * (i + 1) / settings.finetune_checks)) for i in range(settings.finetune_checks)
    }
    own_level = measure(kin_core, task, TrainedMother(net), settings.episodes, select_seed)["baby_survival"]
    curve = []

    def check(update: int, total: int, row: dict, speed: float) -> None:
        if update in checks:
            tuned = TrainedMother(trainer.net)
            point = {
                "agent_steps": update * trainer.per_update,
                **measure(foster_core, task, tuned, settings.episodes, select_seed),
            }
            trainer.net.train()
            curve.append(point)
            progress(f"{point['agent_steps']:,} steps: foster baby survival {point['baby_survival']:.3f}")

    trainer.run(check)
    reached = [p["agent_steps"] for p in curve if p["baby_survival"] >= GOAL * own_level]
    extra = {
        "finetune_curve": curve,
        "steps_to_goal": reached[0] if reached else None,
        "own_baby_survival_untreated_selection": own_level,
    }
    return extra, nullcontext, TrainedMother(trainer.net), []


def pooled(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline keys over several runs (e.g. training seeds): survival pooled over every baby born
    (with its 95% Wilson interval), the mother's change averaged over runs."""

    def pool(when: str, world: str) -> tuple[float, list[float]]:
        born = sum(r[when][world]["babies"] for r in reports)
        alive = sum(r[when][world]["baby_survival"] * r[when][world]["babies"] for r in reports)
        return (alive / born if born else 0.0), list(wilson_ci95(alive, born))

    out: dict[str, Any] = {"method": reports[0]["method"], "runs": [r["run"] for r in reports]}
    names = {"foster": "new_baby", "own": "own_baby", "foster_transfer": "new_baby_transfer",
             "own_transfer": "own_baby_transfer"}  # fmt: skip
    for when in ("before", "after"):
        for world, name in names.items():
            out[f"{name}_survival_{when}"], out[f"{name}_survival_{when}_ci95"] = pool(when, world)
    for key in ("mother_survival_change", "mother_survival_vs_own_baby"):
        out[key] = sum(r[key] for r in reports) / len(reports)
    controls = [m for r in reports for m in r.get("controls", [])]
    if controls:
        born = sum(m["babies"] for m in controls)
        alive = sum(m["baby_survival"] * m["babies"] for m in controls)
        out["new_baby_survival_control"] = alive / born if born else 0.0
        out["new_baby_survival_control_ci95"] = list(wilson_ci95(alive, born))
    out["goal_met_before"] = _share_reached(out["new_baby_survival_before"], out["own_baby_survival_before"])
    out["goal"] = goal_parts(out)
    out["goal_met"] = all(part["met"] is not False for part in out["goal"].values())
    return out
