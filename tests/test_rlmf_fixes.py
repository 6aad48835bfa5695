"""RLMF at its strongest (spec 000 §2.2-2.4, §3): each fix's defining property. Potential shaping
telescopes over an episode, the action judge's payment is zero on average over its own distribution,
the prior pays the log-probability, PopArt keeps value targets at unit scale without moving the values,
separate critics keep their losses off the policy's trunk, joint advantages let the penalty's size count,
the relative weaning threshold lets β₁ fall, and a mother who dies leaving her baby is charged."""

import dataclasses
import json
import math

import pytest
import torch

from analysis.cli import main
from caring.config import TrainConfig, train_config
from caring.judges import JudgeNet, action_payment, prior_payment
from caring.networks import MotherNet
from caring.ppo import combined_advantage, popart
from caring.protocols import Transition
from caring.schedules import BetaSchedule
from caring.streams import Context
from caring.streams.rlmf import RLMF
from caring.tasks.nursery import NurseryTask
from worlds.config import ConfigError, build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import N_ACTIONS, STAY, NurseryCore
from worlds.nursery.scripted import SCRIPTED
from worlds.rng import episode_keys

NURSERY = NurseryTask()


def stream_with(models: dict, core: NurseryCore, **settings) -> RLMF:
    """An RLMF stream over `core` whose models are given (no demonstrations fitted)."""
    config = build_config(TrainConfig, {"method": "rlmf", **settings})
    stream = RLMF(Context(config, NURSERY, core, MotherNet(core.obs_dim, N_ACTIONS, 16), None, core.device))
    stream.models = models
    return stream


def test_potential_shaping_sums_to_the_end_potential_minus_the_start_over_an_episode():
    core = NurseryCore(NurseryConfig(max_cycles=60, birth_step=5))
    torch.manual_seed(0)
    phi = JudgeNet(core.obs_dim, 1)
    gamma = 0.97
    stream = stream_with({"potential": phi}, core, mat_judge="potential", mat_learned_weight=1.0,
                         mat_penalty=0.0, gamma=gamma)  # fmt: skip
    state, obs = core.reset(episode_keys(3, 6))
    first = state
    total = torch.zeros(6, core.A, dtype=torch.float64)
    expert, careless = SCRIPTED["expert"](core), SCRIPTED["random"](core)
    half = (torch.arange(6) < 3)[:, None]  # the expert's babies live to the end; the random ones' die
    for t in range(core.config.max_cycles):
        action = torch.where(half, expert(state, obs), careless(state, obs))
        after, out = core.step(state, action)
        paid = stream.record(Transition(state, obs, action, after, out))["r_mat"]
        total += gamma**t * paid.double()
        state, obs, last_obs = after, out.obs, out.obs

    def potential(s, o):
        applies = NURSERY.judged(s) & NURSERY.acting(s)
        return torch.sigmoid(phi(o.reshape(-1, core.obs_dim))).view(6, core.A).double() * applies

    T = core.config.max_cycles
    expected = gamma**T * potential(state, last_obs) - potential(first, core.reset(episode_keys(3, 6))[1])
    torch.testing.assert_close(total, expected, atol=1e-5, rtol=0)
    assert expected.abs().sum() > 0  # some mother ended with a living baby: the sum is not trivially 0
    assert (~NURSERY.acting(state)).any()  # and some died: their potential is 0 from then on


def test_the_action_judges_payment_has_zero_mean_under_its_own_distribution():
    torch.manual_seed(1)
    logits = torch.randn(50, N_ACTIONS) * 3
    paid = torch.stack([action_payment(logits, torch.full((50,), a)) for a in range(N_ACTIONS)], -1)
    torch.testing.assert_close((logits.softmax(-1) * paid).sum(-1), torch.zeros(50), atol=1e-5, rtol=0)
    # Ranking is the judge's: the favourite action is paid the most.
    assert torch.equal(paid.argmax(-1), logits.argmax(-1))
    # In the stream: paid only where the baby lives, the same zero mean there.
    core = NurseryCore(NurseryConfig(birth_step=0))
    judge = JudgeNet(core.obs_dim, N_ACTIONS)
    stream = stream_with({"action": judge}, core, mat_judge="action", mat_learned_weight=2.0, mat_penalty=0.0)
    state, obs = core.reset(episode_keys(0, 4))
    rewards = []
    for a in range(N_ACTIONS):
        action = torch.full((4, core.A), a)
        after, out = core.step(state, action)
        rewards.append(stream.record(Transition(state, obs, action, after, out))["r_mat"])
    rewards = torch.stack(rewards, -1)  # (B, A, n)
    probs = judge(obs.reshape(-1, core.obs_dim)).softmax(-1).view(4, core.A, N_ACTIONS)
    torch.testing.assert_close((probs * rewards).sum(-1), torch.zeros(4, core.A), atol=1e-5, rtol=0)
    assert rewards.abs().sum() > 0


def test_the_prior_pays_the_log_probability_of_the_taken_action_from_the_uniform_policys():
    torch.manual_seed(2)
    logits = torch.randn(7, N_ACTIONS)
    action = torch.randint(0, N_ACTIONS, (7,))
    expected = torch.log(logits.softmax(-1)[torch.arange(7), action]) + math.log(N_ACTIONS)
    torch.testing.assert_close(prior_payment(logits, action), expected)
    core = NurseryCore(NurseryConfig(birth_step=3))
    prior = JudgeNet(core.obs_dim, N_ACTIONS)
    stream = stream_with({"transition": None, "prior": prior}, core, mat_learned_weight=0.0,
                         mat_prior_weight=0.5, mat_penalty=0.0)  # fmt: skip
    state, obs = core.reset(episode_keys(1, 3))
    for _ in range(4):  # the babies are born at step 3
        action = SCRIPTED["expert"](core)(state, obs)
        after, out = core.step(state, action)
        paid = stream.record(Transition(state, obs, action, after, out))["r_mat"]
        logp = prior_payment(prior(obs.reshape(-1, core.obs_dim)), action.reshape(-1)).view(3, core.A)
        torch.testing.assert_close(paid, 0.5 * logp * NURSERY.judged(state).float())
        state, obs = after, out.obs
    assert NURSERY.judged(state).any() and paid.abs().sum() > 0


def test_popart_keeps_value_targets_at_unit_scale_and_the_values_where_they_were():
    torch.manual_seed(3)
    net = MotherNet(20, 4, 16, value_norm=True)
    obs = torch.randint(0, 256, (64, 20), dtype=torch.uint8)
    for _ in range(200):  # a penalty stream: returns around -40, spread 25; the task's around 1
        before = net(obs)
        returns = torch.stack([1 + 0.1 * torch.randn(512), -40 + 25 * torch.randn(512)])
        popart(net, returns)
        after = net(obs)
        for b, a in zip(before[1:], after[1:], strict=True):  # the denormalised values did not move
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
    mean, std = net.value_stats()
    targets = (returns - mean[:, None]) / std[:, None]
    assert targets.mean(1).abs().max() < 0.2 and (targets.std(1) - 1).abs().max() < 0.2
    assert std[1] > 20  # the raw scale was learned, not assumed
    plain = MotherNet(20, 4, 16)
    assert [t.tolist() for t in plain.value_stats()] == [[0.0, 0.0], [1.0, 1.0]]


def test_separate_critics_keep_their_losses_off_the_policys_trunk():
    obs = torch.randint(0, 256, (8, 20), dtype=torch.uint8)
    # which critic's loss reaches the policy's trunk: (task, mat)
    for critics, reaches in (
        ("shared", (True, True)),
        ("separate", (False, False)),
        ("mat-separate", (True, False)),
    ):
        for stream, reached in zip((2, 3), reaches, strict=True):
            torch.manual_seed(0)
            net = MotherNet(20, 4, 16, critics=critics)
            net.outputs(obs)[stream].square().sum().backward()
            grad = net.trunk_1.weight.grad
            assert (grad is not None and grad.abs().sum() > 0) == reached, (critics, stream)
        hooks = {name for name in net.hook_points() if name.startswith("hook_critic_")}
        own = {"shared": set(), "separate": {"task", "mat"}, "mat-separate": {"mat"}}[critics]
        assert (
            hooks == {f"hook_critic_{s}_{i}" for s in own for i in (1, 2)} and net.blank().critics == critics
        )


def test_joint_advantages_let_the_penalty_size_count_and_per_stream_ones_do_not():
    torch.manual_seed(4)
    a_task, a_mat = torch.randn(100), torch.randn(100)
    per = combined_advantage(a_task, a_mat, 0.5, "per-stream")
    torch.testing.assert_close(combined_advantage(a_task, 25 * a_mat, 0.5, "per-stream"), per)
    joint_small = combined_advantage(a_task, a_mat, 0.5, "joint")
    joint_large = combined_advantage(a_task, 25 * a_mat, 0.5, "joint")
    corr = lambda x: float(torch.corrcoef(torch.stack([x, a_mat]))[0, 1])  # noqa: E731
    assert corr(joint_large) > 0.99 > corr(joint_small)
    assert abs(float(joint_large.std()) - 1) < 1e-3


def test_a_relative_threshold_lets_beta_fall_where_an_absolute_one_never_does():
    # A mother whose harm falls from 0.2 (untrained) to 0.05: above 0.02, below half of 0.2.
    rates = [0.2, *[0.05] * 30]
    absolute = BetaSchedule(kind="adaptive", beta0=0.5, harm_threshold=0.02)
    relative = BetaSchedule(kind="adaptive", beta0=0.5, harm_threshold=0.02, relative=0.5)
    betas = {"absolute": [], "relative": []}
    for t, harm in enumerate(rates):
        betas["absolute"].append(absolute.step(t, harm))
        betas["relative"].append(relative.step(t, harm))
    assert min(betas["absolute"]) == 0.5
    assert betas["relative"][-1] < 0.1 and relative.threshold == pytest.approx(0.1)
    again = BetaSchedule.from_json(json.loads(json.dumps(relative.to_json())))
    assert again.reference == pytest.approx(0.2) and again.step(31, 0.15) > again.beta_min


def test_a_mother_who_dies_while_her_baby_lives_is_charged_only_with_the_death_charge():
    core = NurseryCore(NurseryConfig(birth_step=0, n_predators=0))
    state, obs = core.reset(episode_keys(5, 2))
    energy = state.energy.clone()
    energy[0] = 1  # mother 0 of each world dies of hunger in this step; mother 1 has plenty
    state = dataclasses.replace(state, energy=energy)
    action = torch.full((2, core.A), STAY)
    after, out = core.step(state, action)
    assert out.events["mother_died"][:, 0].all() and out.events["baby_alive"][:, 0].all()
    plain = NURSERY.rules(core, state, out, 7.0)
    charged = NURSERY.rules(core, state, out, 7.0, death_charge=True)
    assert plain[:, 0].tolist() == [0.0, 0.0] and charged[:, 0].tolist() == [-7.0, -7.0]
    assert torch.equal(plain[:, 1], charged[:, 1])
    stream = stream_with({"transition": None}, core, mat_learned_weight=0.0, mat_penalty=7.0,
                         mat_death_charge=True)  # fmt: skip
    paid = stream.record(Transition(state, obs, action, after, out))["r_mat"]
    assert torch.equal(paid, charged)


def test_the_new_settings_refuse_unknown_choices():
    from caring.tasks.lava import LavaTask

    with pytest.raises(ConfigError, match="mat_judge"):
        train_config(LavaTask(), {"mat_judge": "vibes"})
    with pytest.raises(ConfigError, match="critics"):
        train_config(NURSERY, {"critics": "many"})


TINY = ["--steps", "256", "--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16",
        "--train-set", "demo_episodes=4"]  # fmt: skip


@pytest.mark.parametrize("judge", ["action", "potential"])
def test_a_run_with_each_judge_trains_resumes_and_is_audited(tmp_path, capsys, judge):
    run = tmp_path / judge
    settings = (f"mat_judge={judge}", "mat_prior_weight=0.2", "critics=separate", "value_norm=true",
                "adv_norm=joint")  # fmt: skip
    extra = [arg for setting in settings for arg in ("--train-set", setting)]
    short = ["--set", "max_cycles=40"]  # babies at step 20: demonstrations and the audit stay cheap
    assert main(["train", "nursery", "--method", "rlmf", "--out", str(run), *TINY, *short, *extra]) == 0
    files = {p.name for p in run.iterdir()}
    assert {f"maternal_{judge}.safetensors", "prior.safetensors", "prior.json"} <= files
    report = json.loads((run / f"maternal_{judge}.json").read_text())
    assert report["train_states"] > 0
    capsys.readouterr()
    assert main(["audit", str(run), "--episodes", "2", "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)["audits"][str(run)]
    assert 0.0 <= audit["top_action_is_taken"] <= 1.0 and len(audit["reward_if"]) == N_ACTIONS
    # The prior's file is lost: resuming fits it again, identically.
    prior = (run / "prior.safetensors").read_bytes()
    (run / "prior.safetensors").unlink()
    assert main(["train", "nursery", "--out", str(run), "--resume", "--steps", "512"]) == 0
    assert (run / "prior.safetensors").read_bytes() == prior
