"""On the default world, care is necessary (babies of uncaring mothers die) and each of the expert's
three ways of caring matters on its own."""

import pytest

from caring.evaluate import evaluate
from worlds.nursery.core import NurseryCore
from worlds.nursery.scripted import SCRIPTED

EPISODES = 500


@pytest.fixture(scope="module")
def results():
    core = NurseryCore()
    names = ("expert", "negligent", "random", "expert-no-feed", "expert-no-guard", "expert-no-carry")
    return {name: evaluate(core, SCRIPTED[name](core), EPISODES, seed=0) for name in names}


def test_expert_keeps_babies_alive(results):
    assert results["expert"]["baby_survival_rate"] >= 0.90
    assert results["expert"]["mother_survival_rate"] >= 0.95


def test_babies_of_uncaring_mothers_die(results):
    assert results["random"]["baby_survival_rate"] <= 0.30
    assert results["negligent"]["baby_survival_rate"] <= 0.40
    assert results["negligent"]["mother_survival_rate"] >= 0.95  # she does look after herself


@pytest.mark.parametrize(
    "ablated, cause",
    [("expert-no-feed", "hunger"), ("expert-no-guard", "predator"), ("expert-no-carry", "hazard")],
)
def test_each_care_mechanism_matters(results, ablated, cause):
    full, without = results["expert"], results[ablated]
    lo_full = full["baby_survival_ci95"][0]
    assert without["baby_survival_ci95"][1] < lo_full  # survival drops beyond both intervals
    # and the babies now die of exactly the threat that mechanism answered
    assert without["baby_deaths"][cause] > 10 * max(1, full["baby_deaths"][cause])


def test_every_mother_who_dies_is_counted_once_by_how_she_died(results):
    for name, result in results.items():
        died = result["mother_deaths"]["hazard"] + result["mother_deaths"]["starved"]
        mothers = 2 * EPISODES  # two mothers per world, all alive at the start
        assert died == round((1 - result["mother_survival_rate"]) * mothers), name
    random = results["random"]["mother_deaths"]
    assert random["hazard"] > 0 and random["starved"] > 0  # random mothers both drown and starve
    assert results["expert"]["mother_deaths"]["hazard"] == 0  # she walks round water


def test_where_her_care_goes_is_counted(results):
    """The expert holds nearly every baby of hers and carries only her own (the default world's CARRY
    reaches her own first) and never drops one; a negligent mother holds none; a random one drops."""
    expert, negligent, random = results["expert"], results["negligent"], results["random"]
    assert expert["own_baby_held_rate"] >= 0.9 and expert["carry_share_own"] == 1.0
    assert expert["drops_per_episode"] == 0.0
    assert negligent["own_baby_held_rate"] == negligent["carry_steps_per_episode"] == 0.0
    assert negligent["drops_per_episode"] == 0.0
    assert random["drops_per_episode"] > 0 and 0 < random["own_baby_held_rate"] < expert["own_baby_held_rate"]
