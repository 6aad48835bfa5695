"""`caring transplant DONOR RECIPIENT --out DIR`: give a mother who never cared the caring drive of one
who does, with no reinforcement learning on her (spec 001: "then we can actually start to think about
recreating it from scratch").

The recipient is a mother trained in the same world without the baby in her reward
(`baby_reward_weight=0`: paid for her own survival only). The donor's caring drive is taken to be her
top-k care units of the last hidden layer (`hook_trunk_2`, ranked by single-unit ablation: care drop
minus self-care drop, `analysis.localize`) with their readout into her policy (W_d[:, U], the policy
head's columns for those units). The recipient acts on her own logits plus c x W_d[:, U] h_U(obs), where
the units' activations h_U come

- graft: from the donor's own layers run on the same observation (the units and everything under
  them are transplanted whole), or
- adapter: from the recipient's own last hidden layer through a linear map fitted (ridge) to the
  donor's activations of those units on the donor's rollouts: only the readout and a k x hidden map
  move, and whatever the recipient already represents of babies must carry the rest.

The coefficient c is chosen on selection episodes (the highest baby survival whose mother survival stays
within 5 points of the untreated recipient's) and reported on other episodes, against the same
transplant of k random donor units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from analysis import assays, circuit_plots
from analysis.circuits import load_run
from analysis.localize import rank_units
from analysis.probes import activations, collect
from analysis.retarget import measure_each
from caring.files import write_json
from caring.networks import MotherNet
from caring.policies import TrainedMother
from worlds.config import ConfigError, param, validate_fields

METHODS = ("graft", "adapter")
SITE = "hook_trunk_2"  # the layer the policy head reads
MOTHER_SURVIVAL_SLACK = 0.05  # how far her own survival may fall for a coefficient to be chosen


@dataclass(frozen=True)
class TransplantSettings:
    method: str = param("graft", "where the transplanted units' activations come from", choices=METHODS)
    units: int = param(16, "the donor's top care units transplanted", 1, 4096)
    coefficients: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    episodes: int = param(200, "episodes per measurement", 4, 10**6)
    fit_episodes: int = param(64, "donor rollout episodes whose observations fit the adapter", 2, 10**6)
    instances: int = param(32, "instances of each assay situation that rank the donor's units", 2, 10**5)
    random_sets: int = param(3, "random donor unit sets of the same size (controls)", 0, 1000)
    ridge: float = param(1e-2, "adapter: ridge penalty (on standardised activations)", 0.0, 1e6)
    seed: int = param(0, "seed of rollouts, batteries and episodes", 0, 2**31 - 1)

    def validate(self) -> None:
        validate_fields(self)
        if not self.coefficients or any(c < 0 for c in self.coefficients):
            raise ConfigError(
                f"coefficients must be a non-empty list of non-negative numbers, got {self.coefficients}"
            )


class Adapter:
    """obs -> (N, k) the donor units' activations predicted from the recipient's last hidden layer."""

    def __init__(self, recipient: MotherNet, weight: torch.Tensor, bias: torch.Tensor):
        self.recipient, self.weight, self.bias = recipient, weight, bias  # (hidden, k), (k,)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.recipient.trunk(obs) @ self.weight + self.bias


def fit_adapter(
    recipient: MotherNet, donor: MotherNet, units: list[int], obs: torch.Tensor, ridge: float
) -> tuple[Adapter, float]:
    """Ridge regression from the recipient's last hidden layer to the donor's `units` on `obs` (the last
    quarter held out): the adapter (refitted on all rows) and its held-out R²."""
    source = activations(recipient, obs)[SITE].double()
    target = activations(donor, obs)[SITE][:, units].double()
    cut = max(1, 3 * len(obs) // 4)

    def fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean_x, mean_y = x.mean(0), y.mean(0)
        xc = x - mean_x
        gram = xc.T @ xc + ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
        weight = torch.linalg.solve(gram, xc.T @ (y - mean_y))
        return weight, mean_y - mean_x @ weight

    weight, bias = fit(source[:cut], target[:cut])
    residual = target[cut:] - (source[cut:] @ weight + bias)
    total = (target[cut:] - target[cut:].mean(0)).square().sum()
    r2 = float(1 - residual.square().sum() / total.clamp(min=1e-12))
    weight, bias = fit(source, target)
    dtype = recipient.policy.weight.dtype
    return Adapter(recipient, weight.to(dtype), bias.to(dtype)), r2


class TransplantedMother(TrainedMother):
    """The recipient, her logits plus coefficient x the donor's readout of the transplanted units."""

    def __init__(
        self,
        recipient: MotherNet,
        donor: MotherNet,
        units: list[int],
        coefficient: float,
        adapter: Adapter | None = None,
    ):
        super().__init__(recipient)
        self.donor, self.units, self.coefficient, self.adapter = donor.eval(), units, coefficient, adapter
        self.readout = donor.policy.weight.detach()[:, units]  # (n_actions, k)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        own = super().logits(obs)
        if self.coefficient == 0 or not self.units:
            return own
        units = self.adapter(obs) if self.adapter is not None else self.donor.trunk(obs)[:, self.units]
        return own + self.coefficient * units @ self.readout.T


def run_transplant(
    donor_run: str | Path,
    recipient_run: str | Path,
    out: Path,
    settings: TransplantSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    task, core, donor = load_run(donor_run, device)
    _, recipient_core, recipient = load_run(recipient_run, device)
    if (
        dataclasses.replace(recipient_core.config, baby_reward_weight=core.config.baby_reward_weight)
        != core.config
    ):
        raise ConfigError(
            f"{recipient_run} was trained in another world than {donor_run} (beyond baby_reward_weight); "
            "a transplant needs the same world"
        )
    if donor.hidden != recipient.hidden or settings.units > donor.hidden:
        raise ConfigError(
            f"--units must be at most the donor's {donor.hidden} units, and both mothers need the same "
            f"layer width (donor {donor.hidden}, recipient {recipient.hidden})"
        )
    select_seed, test_seed = settings.seed + 1, settings.seed + 2
    out.mkdir(parents=True, exist_ok=True)

    progress(f"ranking the donor's care units of {SITE}")
    rollouts = collect(core, TrainedMother(donor), settings.fit_episodes, settings.seed)
    reference = activations(donor, rollouts.obs)[SITE]
    battery = assays.build_battery(core, settings.instances, settings.seed + 3, "kin")
    ranking = rank_units(donor, battery, SITE, reference).tolist()
    units = ranking[: settings.units]
    generator = torch.Generator().manual_seed(settings.seed)
    random_sets = [
        torch.randperm(donor.hidden, generator=generator)[: settings.units].tolist()
        for _ in range(settings.random_sets)
    ]

    def make(chosen: list[int]) -> tuple[Adapter | None, float | None]:
        if settings.method == "graft":
            return None, None
        return fit_adapter(recipient, donor, chosen, rollouts.obs, settings.ridge)

    adapter, r2 = make(units)
    report: dict[str, Any] = {
        "donor": str(donor_run),
        "recipient": str(recipient_run),
        "method": settings.method,
        "settings": dataclasses.asdict(settings),
        "site": SITE,
        "units": units,
        "adapter_heldout_r2": r2,
    }
    untreated_selection, *doses = measure_each(
        core,
        task,
        [TrainedMother(recipient)]
        + [TransplantedMother(recipient, donor, units, c, adapter) for c in settings.coefficients],
        settings.episodes,
        select_seed,
    )
    dose = [{"coefficient": c, **row} for c, row in zip(settings.coefficients, doses, strict=True)]
    for row in dose:
        progress(
            f"c={row['coefficient']}: baby survival {row['baby_survival']:.3f}, "
            f"mother {row['mother_survival']:.3f}"
        )
    floor = untreated_selection["mother_survival"] - MOTHER_SURVIVAL_SLACK
    allowed = [row for row in dose if row["mother_survival"] >= floor] or dose[:1]
    chosen = max(allowed, key=lambda row: (row["baby_survival"], -row["coefficient"]))["coefficient"]
    random_mothers = [
        TransplantedMother(recipient, donor, random_units, chosen, make(random_units)[0])
        for random_units in random_sets
    ]
    # every test-episode measurement side by side: donor, recipient before and after, random controls
    transplanted = TransplantedMother(recipient, donor, units, chosen, adapter)
    mothers = [TrainedMother(donor), TrainedMother(recipient), transplanted, *random_mothers]
    report["donor_untreated"], report["before"], after, *controls = measure_each(
        core, task, mothers, settings.episodes, test_seed
    )
    report |= {
        "before_selection": untreated_selection,
        "dose_response": dose,
        "chosen_coefficient": chosen,
        "after": after,
        "controls": controls,
        "baby_survival_before": report["before"]["baby_survival"],
        "baby_survival_after": after["baby_survival"],
        "baby_survival_control": sum(m["baby_survival"] for m in controls) / len(controls)
        if controls
        else None,
        "mother_survival_change": after["mother_survival"] - report["before"]["mother_survival"],
    }
    write_json(out / "report.json", report)
    circuit_plots.plot_transplant(report, out / "dose_response.png")
    return report
