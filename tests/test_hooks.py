"""analysis.hooks: every intervention does what it says inside its block and leaves the network exactly
as it was afterwards, exceptions included."""

import json

import pytest
import torch

from analysis.hooks import Intervened, ablate, cache, intervene, patch, steer
from caring.networks import MotherNet
from worlds.config import ConfigError


@pytest.fixture
def net_and_obs():
    torch.manual_seed(0)
    net = MotherNet(obs_dim=40, n_actions=5, hidden=16)
    obs = torch.randint(0, 256, (12, 40), dtype=torch.uint8)
    return net, obs


def no_hooks_left(net: MotherNet) -> bool:
    return all(not m._forward_hooks for m in net.modules())


def test_every_intervention_restores_the_network_bit_for_bit(net_and_obs):
    net, obs = net_and_obs
    before = net(obs)
    with cache(net) as acts:
        net(obs)
    contexts = [
        lambda: ablate(net, "hook_trunk_1", None, "zero"),
        lambda: ablate(net, "hook_trunk_2", None, "mean", reference=acts["hook_trunk_2"]),
        lambda: ablate(net, "hook_trunk_2", None, "resample", reference=acts["hook_trunk_2"]),
        lambda: patch(net, "hook_trunk_1", torch.zeros(12, 16)),
        lambda: steer(net, "hook_logits", torch.ones(5), 3.0),
        lambda: cache(net, ["hook_obs"]),
    ]
    for make in contexts:
        with make():
            during = net(obs)
        after = net(obs)
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)) and no_hooks_left(net)
        if make is not contexts[-1]:  # every edit but the cache changes something
            assert not all(torch.equal(a, b) for a, b in zip(before, during, strict=True))
        with pytest.raises(RuntimeError), make():
            raise RuntimeError("inside the block")
        assert no_hooks_left(net)


def test_cache_holds_the_activations_the_forward_pass_used(net_and_obs):
    net, obs = net_and_obs
    with cache(net) as acts:
        logits, v_task, v_mat = net(obs)
    assert set(acts) == set(net.hook_points())
    assert torch.equal(acts["hook_trunk_2"], net.trunk(obs)) and torch.equal(acts["hook_logits"], logits)
    assert torch.equal(acts["hook_value_task"][:, 0], v_task) and torch.equal(
        acts["hook_value_mat"][:, 0], v_mat
    )


def test_ablations_patches_and_steering_change_exactly_what_they_name(net_and_obs):
    net, obs = net_and_obs
    with cache(net) as acts:
        net(obs)
    h = acts["hook_trunk_2"]
    with ablate(net, "hook_trunk_2", None, "zero"):
        logits, _, _ = net(obs)  # no features left: the policy head's bias alone
    assert torch.equal(logits, net.policy.bias.expand(12, -1))
    with ablate(net, "hook_trunk_2", [2, 5], "mean", reference=h), cache(net, ["hook_trunk_2"]) as inside:
        net(obs)
    changed = inside["hook_trunk_2"]
    assert torch.equal(changed[:, [2, 5]], h[:, [2, 5]].mean(0).expand(12, -1))
    keep = [u for u in range(16) if u not in (2, 5)]
    assert torch.equal(changed[:, keep], h[:, keep])
    other = torch.randint(0, 256, (12, 40), dtype=torch.uint8)
    with cache(net) as source:
        expected = net(other)
    with patch(net, "hook_trunk_2", source["hook_trunk_2"]):
        patched = net(obs)  # every unit patched: the heads see the other input's features
    assert all(torch.equal(a, b) for a, b in zip(patched, expected, strict=True))
    vector = torch.arange(5.0)
    with steer(net, "hook_logits", vector, -2.0):
        steered, _, _ = net(obs)
    torch.testing.assert_close(steered, acts["hook_logits"] - 2.0 * vector)


def test_bad_interventions_get_one_clear_error(net_and_obs):
    net, obs = net_and_obs
    unknown = "unknown hook point 'hook_soul'; valid hook points: hook_obs"
    with pytest.raises(ConfigError, match=unknown), cache(net, ["hook_soul"]):
        pass
    with pytest.raises(ConfigError, match="unknown ablation 'gentle'"):
        ablate(net, "hook_trunk_1", None, "gentle")
    with pytest.raises(ConfigError, match="mean ablation needs reference activations"):
        ablate(net, "hook_trunk_1", None, "mean")
    with pytest.raises(ConfigError, match="unit index out of range"), ablate(net, "hook_trunk_1", [16]):
        net(obs)
    shrink = {"hook_trunk_1": lambda out: out[:, :3]}
    with pytest.raises(ValueError, match="changed an activation's shape"), intervene(net, shrink):
        net(obs)
    assert no_hooks_left(net)


def test_mothers_under_different_interventions_evaluated_side_by_side_equal_each_alone():
    """Task.evaluate_each steps several policies in one batch of worlds, each in its own block: every
    policy's evaluation (a resampling ablation's draws included) is the one it gets alone, whether its
    episodes fill several runs or share a run with another's, and no hook is left behind."""
    from pathlib import Path

    from caring.evaluate import evaluate, evaluate_each
    from caring.policies import TrainedMother
    from caring.runs import load_mother
    from caring.tasks import get_task
    from worlds.nursery.config import NurseryConfig
    from worlds.nursery.core import N_ACTIONS, NurseryCore
    from worlds.nursery.scripted import SCRIPTED

    core = NurseryCore(NurseryConfig(max_cycles=60))
    net = load_mother(Path(__file__).parent.parent / "notebooks" / "mother", core, get_task("nursery"))
    reference = torch.randn(32, net.hidden)
    mother = TrainedMother(net)

    def policies() -> list:  # fresh generators: each list draws its resampled rows from the start
        draws = torch.Generator().manual_seed(5)
        return [
            mother,
            Intervened(mother, lambda: ablate(net, "hook_trunk_1", None, "zero")),
            Intervened(mother, lambda: ablate(net, "hook_trunk_2", None, "resample", reference, draws)),
            SCRIPTED["expert"](core),
            Intervened(mother, lambda: steer(net, "hook_logits", torch.arange(N_ACTIONS).float(), 2.0)),
        ]

    alone = [evaluate(core, policy, 7, seed=4) for policy in policies()]
    assert evaluate_each(core, policies(), 7, seed=4, batch=16) == alone  # two policies a run
    spanning = [evaluate(core, policy, 11, seed=4, batch=8) for policy in policies()[1:3]]
    assert evaluate_each(core, policies()[1:3], 11, seed=4, batch=8) == spanning  # runs of 8, 3
    assert len({json.dumps(result) for result in alone}) == len(alone)  # each intervention does act
    assert no_hooks_left(net)
