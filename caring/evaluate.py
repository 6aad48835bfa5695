"""Batched evaluation of any mother policy on the nursery: episode metrics derived from step events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch

from caring.episodes import episode_keys, play, side_by_side, wilson_ci95
from caring.protocols import Policy
from worlds.nursery.core import HARM_CAUSES, NurseryCore

MOTHER_DEATH_CAUSES = ("hazard", "starved")  # a mother drowns, or her energy runs out


def evaluate(core: NurseryCore, policy: Policy, episodes: int, seed: int, batch: int = 1024) -> dict:
    """Run `episodes` full episodes (max_cycles steps each) and summarise them. A world of several
    generations also gets its lineage length and each generation's baby survival."""
    return evaluate_each(core, [policy], episodes, seed, batch)[0]


@torch.inference_mode()
def evaluate_each(
    core: NurseryCore, policies: Sequence[Policy], episodes: int, seed: int, batch: int = 1024
) -> list[dict]:
    """`evaluate` of each policy on the same episodes, the policies stepped side by side: a dose
    sweep or an ablation curve at the cost of a few evaluations instead of one per point."""
    keys = episode_keys(seed, episodes, core.device)
    summarise = partial(_summarise, core, episodes=episodes, seed=seed)
    return side_by_side(partial(_run, core), summarise, policies, keys, batch, _chunk_sums)


def _chunk_sums(per_world: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One chunk's tallies (B, A) summed over its worlds, kept as (1, A)."""
    return {name: value.sum(0, keepdim=True) for name, value in per_world.items()}


def _summarise(core: NurseryCore, per_world: dict[str, torch.Tensor], episodes: int, seed: int) -> dict:
    """One policy's evaluation from its tallies, each (chunks, A) (sums over each chunk's worlds)."""
    per_slot = {name: value.sum(0).double() for name, value in per_world.items()}  # name -> (A,)
    totals = {name: float(value.sum()) for name, value in per_slot.items()}
    born = totals["babies_born"]
    # Babies who grew up (into mothers, or left at a scheduled birth) survived.
    survived = totals["babies_alive_at_end"] + totals["babies_grown"]
    lo, hi = wilson_ci95(survived, born)
    per_episode = {
        f"{k}_per_episode": totals[k] / episodes
        for k in ("harm_events", "feeds", "carry_steps", "guards", "hazard_contacts", "drops")
    }
    result = {
        "episodes": episodes,
        "seed": seed,
        "baby_survival_rate": survived / born if born else 0.0,
        "baby_survival_ci95": [lo, hi],
        "baby_lifetime_mean": totals["baby_lifetime"] / born if born else 0.0,
        **per_episode,
        # Where her care goes: did she ever hold her own baby, and whom did she carry?
        "own_baby_held_rate": totals["babies_held"] / born if born else 0.0,
        "carry_share_own": totals["own_carry_steps"] / max(totals["carry_steps"], 1.0),
        "mother_survival_rate": totals["mothers_alive_at_end"] / totals["mothers_joined"],
        "babies_born": int(born),
        "baby_deaths": {cause: int(totals[f"deaths_{cause}"]) for cause in HARM_CAUSES},
        "mother_deaths": {cause: int(totals[f"mother_deaths_{cause}"]) for cause in MOTHER_DEATH_CAUSES},
    }
    result |= from_counts(result)
    if core.config.orphans:  # the babies nobody is paid for: does her care reach them?
        orphans, saved = totals["orphans_born"], totals["orphans_alive_at_end"]
        result["orphan_survival_rate"] = saved / orphans if orphans else 0.0
        result["orphan_survival_ci95"] = list(wilson_ci95(saved, orphans))
        result["orphans_born"] = int(orphans)
    if core.config.generations > 1:
        result |= _generations(core, per_slot, episodes)
    return result


def from_counts(result: dict[str, Any]) -> dict[str, float]:
    """Metrics of an evaluation's stored counts. Baby deaths per episode compare across worlds where
    survival does not: with scheduled births a baby counts as surviving once it leaves, whatever its age."""
    return {"baby_deaths_per_episode": sum(result["baby_deaths"].values()) / result["episodes"]}


def _generations(core: NurseryCore, per_slot: dict[str, torch.Tensor], episodes: int) -> dict:
    """Lineage length (generations of mothers per founder's line, 1..generations) and, per generation
    g (1 = the founders), her babies' survival (alive at the end or grown up) and her own survival."""
    G, n = core.config.generations, core.founders

    def by_generation(name: str) -> list[float]:  # (A,) -> per generation
        return per_slot[name].view(G, n).sum(1).tolist()

    born, alive, grown = (by_generation(k) for k in ("babies_born", "babies_alive_at_end", "babies_grown"))
    joined, mothers_alive = by_generation("mothers_joined"), by_generation("mothers_alive_at_end")
    out: dict[str, Any] = {"lineage_length": sum(joined) / (episodes * n)}
    for g in range(G):
        lo, hi = wilson_ci95(alive[g] + grown[g], born[g])
        out[f"gen{g + 1}_baby_survival"] = (alive[g] + grown[g]) / born[g] if born[g] else float("nan")
        out[f"gen{g + 1}_baby_survival_ci95"] = [lo, hi]
        out[f"gen{g + 1}_babies_born"] = int(born[g])
        out[f"gen{g + 1}_mothers"] = int(joined[g])
        out[f"gen{g + 1}_mother_survival"] = mothers_alive[g] / joined[g] if joined[g] else float("nan")
    return out


def death_causes(events: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each baby death of a step put down to one cause, the gravest harm of its step: water, then a bite,
    then (whatever else) hunger. {cause: bool tensor shaped like events["baby_died"]}."""
    died = events["baby_died"].bool()
    hazard, bite = events["baby_harm_hazard"].bool(), events["baby_harm_predator"].bool()
    return {"hazard": died & hazard, "predator": died & ~hazard & bite, "hunger": died & ~hazard & ~bite}


def _run(core: NurseryCore, policy: Policy, keys: torch.Tensor) -> dict[str, torch.Tensor]:
    """One batch of episodes -> per-world tallies, each (B, A)."""
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
            "babies_grown",
            "babies_held",
            "own_carry_steps",
            "drops",
            *(f"mother_deaths_{c}" for c in MOTHER_DEATH_CAUSES),
            *(f"deaths_{c}" for c in HARM_CAUSES),
        )
    }
    mothered = state.joined  # (A, B): slots with a mother; an orphan's baby counts only as an orphan
    acc["babies_born"] = (state.baby_alive & mothered).long().T  # births at reset; state is batch-last
    orphan_born = state.baby_alive & core.orphan  # (A, B): orphans carry no events; seen alive = born
    held = torch.zeros_like(state.baby_alive)  # (A, B): she has held her present baby at some step
    for step in play(core, policy, state, obs):
        state, ev = step.after, step.out.events
        holds_own = (state.carried_by == core.slots[:, None]) & state.baby_alive  # (A, B)
        held = held & ~ev["baby_born"].T.bool()  # a new baby: not held yet
        acc["babies_held"] += (holds_own & ~held).long().T
        acc["own_carry_steps"] += holds_own.long().T
        held = held | holds_own
        acc["drops"] += ev["dropped"]
        orphan_born = orphan_born | (state.baby_alive & core.orphan)
        harms = [ev[f"baby_harm_{c}"] for c in HARM_CAUSES]
        acc["harm_events"] += sum(harms)
        acc["feeds"] += ev["fed"]
        acc["carry_steps"] += ev["carrying"]
        acc["guards"] += ev["guarded"]
        acc["hazard_contacts"] += ev["mother_hazard"] + ev["baby_harm_hazard"]
        acc["baby_lifetime"] += ev["baby_alive"] + ev["baby_died"]  # a baby's last step counts as lived
        acc["babies_born"] += ev["baby_born"]
        acc["babies_grown"] += ev["grew_up"]
        acc["mother_deaths_hazard"] += ev["mother_died"] * ev["mother_hazard"]
        acc["mother_deaths_starved"] += ev["mother_died"] * (1 - ev["mother_hazard"])
        for cause, died in death_causes(ev).items():
            acc[f"deaths_{cause}"] += died
    acc["babies_alive_at_end"] = (state.baby_alive & state.joined).long().T
    acc["mothers_alive_at_end"] = state.mother_alive.long().T
    acc["mothers_joined"] = state.joined.long().T
    acc["orphans_born"] = orphan_born.long().T
    acc["orphans_alive_at_end"] = (state.baby_alive & core.orphan).long().T
    return acc
