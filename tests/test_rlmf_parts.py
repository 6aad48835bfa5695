"""RLMF's building blocks (seed 000 §2.2-2.4): GAE, the combined advantage, β₁ schedules, the network's
hook points, and the maternal reward model M."""

import math

import pytest
import torch

from caring.evaluate import episode_keys
from caring.maternal import (
    MaternalModel,
    PerturbedExpert,
    Transitions,
    balanced_accuracy,
    collect,
    maternal_reward,
    train_maternal,
)
from caring.networks import HookPoint, MotherNet
from caring.ppo import combined_advantage, gae
from caring.schedules import BetaSchedule
from caring.tasks.nursery import NurseryTask, rule_penalty
from worlds.config import ConfigError
from worlds.nursery.core import EVENTS, N_ACTIONS, NurseryCore
from worlds.nursery.scripted import SCRIPTED

NURSERY = NurseryTask()


def test_gae_matches_a_hand_computed_trajectory():
    # One env, three steps, the episode ends after step 1 (index 1); gamma 0.9, lambda 0.8.
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    next_value = torch.tensor([2.0])
    adv, ret = gae(rewards, values, next_value, dones, gamma=0.9, lam=0.8)
    d2 = 3.0 + 0.9 * 2.0 - 1.5  # bootstraps from next_value
    d1 = 2.0 - 1.0  # episode ended: no bootstrap, no carry-over
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    expected = [d0 + 0.9 * 0.8 * d1, d1, d2]
    assert adv[:, 0].tolist() == pytest.approx(expected)
    assert ret[:, 0].tolist() == pytest.approx(
        [e + v for e, v in zip(expected, [0.5, 1.0, 1.5], strict=True)]
    )


def test_combined_advantage_weighs_the_two_streams():
    a_task, a_mat = torch.tensor([1.0, -1.0, 3.0]), torch.tensor([-2.0, 0.0, 2.0])
    assert combined_advantage(a_task, a_mat, 0.25, norm="none").tolist() == pytest.approx(
        [0.75 * 1 + 0.25 * -2, 0.75 * -1, 0.75 * 3 + 0.25 * 2]
    )
    norm = combined_advantage(a_task, a_mat, 0.0)  # β₁ = 0: plain PPO's normalised task advantage
    assert norm.mean().item() == pytest.approx(0, abs=1e-6) and norm.std().item() == pytest.approx(
        1, abs=1e-4
    )
    only_mat = combined_advantage(a_task, a_mat, 1.0)
    assert only_mat.tolist() == pytest.approx(((a_mat - a_mat.mean()) / a_mat.std()).tolist(), abs=1e-5)


@pytest.mark.parametrize(
    "kind, t, expected",
    [
        ("constant", 0, 0.8),
        ("constant", 50, 0.8),
        ("linear", 0, 0.8),
        ("linear", 50, 0.8 + (0.1 - 0.8) * 0.5),
        ("linear", 500, 0.1),
        ("exp", 0, 0.8),
        ("exp", 10, 0.8 * math.exp(-0.03 * 10)),
        ("exp", 1000, 0.1),
    ],
)
def test_time_based_schedules(kind, t, expected):
    schedule = BetaSchedule(kind=kind, beta0=0.8, beta_min=0.1, horizon=100, kappa=0.03)
    assert schedule.step(t, harm=1.0) == pytest.approx(expected)  # harm does not move them


def test_adaptive_beta_falls_after_a_clean_streak_and_rises_after_harm():
    s = BetaSchedule(
        kind="adaptive", beta0=1.0, beta_min=0.05, window=3, slow_decay=0.9, fast_decay=0.5, step_up=0.2
    )
    clean = [s.step(t, harm=0.0) for t in range(5)]
    assert clean[:2] == pytest.approx([0.9, 0.81])  # slow until the streak reaches the window
    assert clean[2:] == pytest.approx([0.405, 0.2025, 0.10125])  # then fast
    assert s.step(5, harm=0.3) == pytest.approx(0.30125)  # harm: step back up, streak reset
    assert s.step(6, harm=0.0) == pytest.approx(0.30125 * 0.9)
    for t in range(7, 60):
        s.step(t, harm=0.0)
    assert s.value(60) == pytest.approx(0.05)  # floored at beta_min
    for t in range(60, 80):
        s.step(t, harm=1.0)
    assert s.value(80) == 1.0  # capped at 1
    again = BetaSchedule.from_json(s.to_json())
    assert again.step(80, 0.0) == s.step(80, 0.0)  # state survives a JSON round trip (resume)


def test_adaptive_beta_never_climbs_above_its_start():
    s = BetaSchedule(kind="adaptive", beta0=0.5, beta_min=0.05, step_up=0.2)
    assert [s.step(t, harm=1.0) for t in range(3)] == [0.5, 0.5, 0.5]  # harm from the start: held at β₁(0)
    s.step(3, harm=0.0)
    assert s.value(4) < 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "sudden"}, "unknown beta schedule 'sudden'"),
        ({"kind": "lagrangian", "cost_limit": 0.0}, "cost_limit"),
        ({"beta0": 1.5}, r"beta0=1.5 must be in \[0, 1\]"),
        ({"beta0": 0.1, "beta_min": 0.2}, "exceeds beta0"),
        ({"beta_min": -0.1}, "must be in"),
    ],
)
def test_schedule_rejects_nonsense(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BetaSchedule(**kwargs)


def test_network_hook_points_are_named_unique_and_see_every_activation():
    net = MotherNet(obs_dim=500, n_actions=9, hidden=32)
    hooks = net.hook_points()
    assert set(hooks) == {
        "hook_obs",
        "hook_trunk_1",
        "hook_trunk_2",
        "hook_logits",
        "hook_value_task",
        "hook_value_mat",
    }
    modules = list(net.modules())
    assert len({id(m) for m in modules}) == len(modules)  # no module used at two sites
    assert not any(getattr(m, "inplace", False) for m in modules)
    seen = {}
    handles = [
        h.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, o.shape))
        for name, h in hooks.items()
    ]
    logits, v_task, v_mat = net(torch.randint(0, 256, (4, 500), dtype=torch.uint8))
    for h in handles:
        h.remove()
    assert logits.shape == (4, 9) and v_task.shape == v_mat.shape == (4,)
    assert seen["hook_trunk_2"] == (4, 32) and seen["hook_value_mat"] == (4, 1)
    assert all(isinstance(h, HookPoint) for h in hooks.values())


def test_rules_penalise_only_preventable_catastrophes():
    def events(**on):
        ev = {k: torch.zeros(1, 4, dtype=torch.int64) for k in EVENTS}
        for k, v in on.items():
            ev[k] = torch.tensor([v])
        return ev

    ev = events(
        baby_harm_hazard=[1, 0, 0, 0],
        baby_harm_predator=[0, 1, 1, 0],
        could_guard=[0, 1, 0, 0],
        baby_harm_hunger=[0, 0, 0, 1],
        baby_distance=[3, 1, 1, 1],
    )
    penalty = rule_penalty(ev, energy_ok=torch.tensor([[True, True, True, True]]), penalty=5.0)
    # drowned; bitten, predator in reach, no shoo; bitten out of reach (no penalty); starved beside
    assert penalty.tolist() == [[-5.0, -5.0, 0.0, -5.0]]
    tired = rule_penalty(ev, energy_ok=torch.tensor([[True, True, True, False]]), penalty=5.0)
    assert tired[0, 3] == 0.0  # she had no energy to feed it
    # A scheduled birth: the baby beside her is the newborn; the one that starved has just left.
    left = events(baby_harm_hunger=[0, 0, 0, 1], baby_distance=[3, 1, 1, 1], grew_up=[0, 0, 0, 1])
    assert rule_penalty(left, energy_ok=torch.ones(1, 4, dtype=torch.bool), penalty=5.0)[0, 3] == 0.0


def test_maternal_reward_weighs_the_learned_judgement_and_pays_it_only_while_the_baby_lives():
    core = NurseryCore()
    torch.manual_seed(0)
    model = MaternalModel(core.obs_dim, N_ACTIONS)
    state, obs = core.reset(episode_keys(0, 3))
    action = torch.tensor([[6, 7], [0, 8], [5, 1]])
    _, out = core.step(state, action)
    alive = torch.tensor([[True, False], [True, True], [False, True]])
    ok = torch.ones(3, 2, dtype=torch.bool)
    rules = rule_penalty(out.events, ok, 5.0)
    args = (model, obs, action, out.obs, alive, rules)
    learned = torch.sigmoid(model(obs.reshape(6, -1), action.reshape(-1), out.obs.reshape(6, -1))).view(3, 2)
    assert torch.equal(maternal_reward(*args, learned_weight=0.0), rules)  # the rules alone
    both = maternal_reward(*args, learned_weight=2.0)
    torch.testing.assert_close(both, 2.0 * learned * alive.float() + rules)
    assert (both[~alive] == rules[~alive]).all() and (both[alive] > rules[alive]).all()


def test_maternal_model_tells_the_expert_from_the_negligent_mother():
    torch.manual_seed(0)
    core = NurseryCore()
    data = Transitions.cat(
        [
            collect(NURSERY, core, SCRIPTED["expert"](core), 40, seed=10, label=1.0),
            collect(NURSERY, core, SCRIPTED["negligent"](core), 300, seed=11, label=0.0),
            collect(NURSERY, core, SCRIPTED["random"](core), 150, seed=12, label=0.0),
        ]
    )
    model, report = train_maternal(data, N_ACTIONS, epochs=5)
    assert report["heldout_balanced_accuracy"] >= 0.95
    expert = collect(NURSERY, core, SCRIPTED["expert"](core), 10, seed=99, label=1.0)
    fresh = Transitions.cat(
        [expert, collect(NURSERY, core, SCRIPTED["negligent"](core), 100, seed=98, label=0.0)]
    )
    assert balanced_accuracy(model, fresh) >= 0.95  # on episodes it never saw, expert vs negligent


def test_perturbed_expert_labels_exactly_the_expert_actions():
    core = NurseryCore()
    expert = SCRIPTED["expert"](core)
    perturbed = PerturbedExpert(expert, N_ACTIONS, rate=0.5)
    state, obs = core.reset(torch.arange(64))
    agree = []
    for _ in range(30):
        actions = perturbed(state, obs)
        labels = perturbed.labels(state, obs, actions)
        assert torch.equal(labels == 1, actions == expert(state, obs))
        agree.append(labels.mean())
        state, out = core.step(state, actions)
        obs = out.obs
    assert 0.4 < float(torch.stack(agree).mean()) < 0.6  # half the actions are replaced, never by hers
    data = collect(NURSERY, core, perturbed, 4, seed=1, label=perturbed.labels)
    assert set(data.label.unique().tolist()) == {0.0, 1.0}
