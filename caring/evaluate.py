"""Batched evaluation of any mother policy on the nursery: episode metrics derived from step events."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from caring.episodes import episode_keys, play, wilson_ci95
from caring.protocols import Policy
from worlds.nursery.core import HARM_CAUSES, NurseryCore


@torch.inference_mode()
def evaluate(core: NurseryCore, policy: Policy, episodes: int, seed: int, batch: int = 1024) -> dict:
    """Run `episodes` full episodes (max_cycles steps each) and summarise them."""
    totals: dict[str, float] = {}
    all_keys = episode_keys(seed, episodes, core.device)
    for start in range(0, episodes, batch):
        for name, value in _run(core, policy, all_keys[start : start + batch]).items():
            totals[name] = totals.get(name, 0.0) + value
    born, mothers = totals["babies_born"], episodes * core.A
    survived = totals["babies_alive_at_end"]
    lo, hi = wilson_ci95(survived, born)
    per_episode = {
        f"{k}_per_episode": totals[k] / episodes
        for k in ("harm_events", "feeds", "carry_steps", "guards", "hazard_contacts")
    }
    return {
        "episodes": episodes,
        "seed": seed,
        "baby_survival_rate": survived / born if born else 0.0,
        "baby_survival_ci95": [lo, hi],
        "baby_lifetime_mean": totals["baby_lifetime"] / born if born else 0.0,
        **per_episode,
        "mother_survival_rate": totals["mothers_alive_at_end"] / mothers,
        "babies_born": int(born),
        "baby_deaths": {cause: int(totals[f"deaths_{cause}"]) for cause in HARM_CAUSES},
    }


def death_causes(events: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each baby death of a step put down to one cause, the gravest harm of its step: water, then a bite,
    then (whatever else) hunger. {cause: bool tensor shaped like events["baby_died"]}."""
    died = events["baby_died"].bool()
    hazard, bite = events["baby_harm_hazard"].bool(), events["baby_harm_predator"].bool()
    return {"hazard": died & hazard, "predator": died & ~hazard & bite, "hunger": died & ~hazard & ~bite}


def _run(core: NurseryCore, policy: Policy, keys: torch.Tensor) -> dict[str, float]:
    state, obs = core.reset(keys)
    B = keys.shape[0]
    zeros = torch.zeros(B, core.A, dtype=torch.int64, device=core.device)
    acc = {
        name: zeros.clone()
        for name in (
            "harm_events",
            "feeds",
            "carry_steps",
            "guards",
            "hazard_contacts",
            "baby_lifetime",
            *(f"deaths_{c}" for c in HARM_CAUSES),
        )
    }
    acc["babies_born"] = state.baby_alive.long().T  # births at reset (birth_step = 0); state is batch-last
    for step in play(core, policy, state, obs):
        state, ev = step.after, step.out.events
        harms = [ev[f"baby_harm_{c}"] for c in HARM_CAUSES]
        acc["harm_events"] += sum(harms)
        acc["feeds"] += ev["fed"]
        acc["carry_steps"] += ev["carrying"]
        acc["guards"] += ev["guarded"]
        acc["hazard_contacts"] += ev["mother_hazard"] + ev["baby_harm_hazard"]
        acc["baby_lifetime"] += ev["baby_alive"] + ev["baby_died"]  # a baby's last step counts as lived
        acc["babies_born"] += ev["baby_born"]
        for cause, died in death_causes(ev).items():
            acc[f"deaths_{cause}"] += died
    sums = {name: float(value.sum()) for name, value in acc.items()}
    sums["babies_alive_at_end"] = float(state.baby_alive.sum())
    sums["mothers_alive_at_end"] = float(state.mother_alive.sum())
    return sums
