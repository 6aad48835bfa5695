"""Generations (spec 001's chain): a grown baby joins as the next generation's mother exactly once, her
mother is paid while she lives, the PettingZoo view's agent list grows with the batched core's, and the
evaluation counts lineages and each generation's survival."""

import numpy as np
import pytest
import torch
from pettingzoo.test import api_test, parallel_api_test

from caring.evaluate import evaluate
from worlds import rng
from worlds.config import ConfigError, build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import EVENTS, N_ACTIONS, STAY, NurseryCore
from worlds.nursery.nursery_v0 import NurseryEnv, _info
from worlds.nursery.nursery_v0 import env as aec_env
from worlds.nursery.scenario import scenario
from worlds.nursery.scripted import SCRIPTED

# A gentle world where random mothers' babies live long enough to grow: no water, no predators, no
# starving babies, well-fed mothers; babies grow up at 10 steps.
GENTLE = {
    "generations": 3,
    "n_hazards": 0,
    "n_predators": 0,
    "hunger_max": 10000,
    "cry_threshold": 10000,
    "energy_max": 255,
    "energy_start": 255,
    "birth_step": 2,
    "grow_age": 10,
    "max_cycles": 120,
}


def core_of(**settings) -> NurseryCore:
    """A world without threats but the ones a test places, where nobody starves within its steps."""
    quiet = {"n_hazards": 0, "n_predators": 0, "hunger_max": 10000, "cry_threshold": 10000}
    return NurseryCore(
        build_config(NurseryConfig, {**quiet, "energy_max": 255, "energy_start": 255, **settings})
    )


def step(core, state, actions=None):
    actions = torch.full((1, core.A), STAY) if actions is None else torch.tensor([actions])
    return core.step(state, actions)


def test_one_generation_is_todays_world():
    core = NurseryCore(NurseryConfig())
    assert core.config.n_mothers == core.A
    state, _ = core.reset(rng.seed_key(torch.arange(4)))
    assert bool(state.joined.all()) and bool(state.mother_alive.all())


def test_slots_beyond_the_marker_palette_are_refused():
    with pytest.raises(ConfigError, match="kin markers"):
        build_config(NurseryConfig, {"n_mothers": 3, "generations": 3})


def test_a_grown_baby_becomes_the_next_mother_exactly_once():
    core = core_of(n_mothers=1, generations=2, grow_age=20, births_per_life=2, rebirth_delay=1)
    grow = core.config.grow_age
    state = scenario(core, mothers=[(3, 3), None], babies=[(3, 4)], age=[grow - 1, 0], carried_by=[0, -1])
    state, out = step(core, state)
    assert out.events["grew_up"].tolist() == [[1, 0]]
    assert state.joined[:, 0].tolist() == [True, True] and state.mother_alive[:, 0].tolist() == [True, True]
    assert state.mother_pos[:, 1, 0].tolist() == [3, 3], (
        "she joins where she stood (carried: her mother's cell)"
    )
    assert int(state.energy[1, 0]) == core.config.energy_start
    assert not bool(state.baby_alive[0, 0]) and int(state.carried_by[0, 0]) == -1
    assert int(state.next_birth[1, 0]) == int(state.t[0]) + core.config.birth_step
    # Her mother has a birth left: her next baby comes, grows, and stays a baby (the slot is taken).
    grew = 0
    for _ in range(3 * grow):
        state, out = step(core, state)
        grew += int(out.events["grew_up"].sum())
    assert grew == 0
    assert bool(state.baby_alive[0, 0]) and int(state.age[0, 0]) >= grow, "the second baby grew, in place"


def test_a_mother_is_paid_while_her_grown_child_lives_and_only_hers():
    # Two lines; line 1's baby grows into mother 3. Mother 1 is then paid for mother 3's life; mother 0,
    # whose baby is alive, for it; mother 2 (line 0's next generation) has not joined and earns nothing.
    core = core_of(n_mothers=2, generations=2, grow_age=20, n_hazards=1)
    grow = core.config.grow_age
    state = scenario(
        core,
        mothers=[(2, 2), (6, 6), None, None],
        babies=[(2, 3), (6, 7)],
        hazards=[(8, 8)],
        age=[0, grow - 1, 0, 0],
    )
    state, out = step(core, state)
    assert out.events["grew_up"].tolist() == [[0, 1, 0, 0]]
    assert out.reward.tolist() == [[1.0, 1.0, 0.0, 0.0]], "a mother joining now was not here to earn it"
    state, out = step(core, state)
    assert out.reward.tolist() == [[1.0, 1.0, 0.0, 1.0]]  # mother 3: self-care until she gives birth
    # Mother 3 walks into the water: her mother's pay stops with her life.
    state.mother_pos[:, 3, 0] = torch.tensor([8, 7])
    state, out = step(core, state, [STAY, STAY, STAY, 2])  # RIGHT
    assert out.terminated.tolist() == [[False, False, False, True]]
    assert out.reward.tolist() == [[1.0, 0.0, 0.0, 0.0]]


def _expert_actions(env: NurseryEnv, expert) -> dict[str, int]:
    obs = env.core.observe(env.world)
    chosen = expert(env.world, obs)[0].tolist()
    return {agent: chosen[env._index[agent]] for agent in env.agents}


def test_batched_core_equals_pettingzoo_view_as_agents_join():
    config, seeds = {**GENTLE, "n_predators": 1, "n_hazards": 4}, [3, 11, 29]
    joined_seen = 0
    for seed in seeds:
        env = NurseryEnv(**config)
        core = NurseryCore(env.config)
        expert = SCRIPTED["expert"](core)
        obs, _ = env.reset(seed=seed)
        state, _ = core.reset(rng.seed_key(seed, core.device))
        assert env.agents == ["mother_0", "mother_1"]
        rng_actions = np.random.default_rng(seed)
        while env.agents:
            actions = _expert_actions(env, expert)
            for agent in actions:  # some noise, so that mothers also die
                if rng_actions.random() < 0.1:
                    actions[agent] = int(rng_actions.integers(N_ACTIONS))
            chosen = [actions.get(a, 0) for a in env.possible_agents]
            before = list(env.agents)
            obs, rewards, terms, truncs, infos = env.step(actions)
            assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos)
            state, out = core.step(state, torch.tensor([chosen]))
            events = torch.stack([out.events[k] for k in EVENTS], -1)[0].T.tolist()
            joined = set(env.agents) - set(before)
            joined_seen += len(joined)
            for agent in set(obs) - set(before):
                assert agent not in before and rewards[agent] == 0.0 and not terms[agent]
            for agent, row in obs.items():
                i = env._index[agent]
                np.testing.assert_array_equal(row, out.obs[0, i].numpy())
                assert rewards[agent] == float(out.reward[0, i])
                assert terms[agent] == bool(out.terminated[0, i]) and truncs[agent] == bool(out.truncated[0])
                assert infos[agent] == _info(events, i)
            present = [a for a in env.possible_agents if bool(state.mother_alive[env._index[a], 0])]
            if not bool(out.truncated[0]):
                assert sorted(env.agents) == sorted(present)
    assert joined_seen >= 4, f"only {joined_seen} mothers joined over {len(seeds)} episodes"


def test_pettingzoo_api_with_a_growing_agent_list():
    env = NurseryEnv(**GENTLE)
    parallel_api_test(env, num_cycles=300)
    api_test(aec_env(**GENTLE), num_cycles=300)
    # Random mothers in this world do raise the next generations (the tests above saw them join).
    env.reset(seed=0)
    most, pick = len(env.agents), np.random.default_rng(1)
    for _ in range(60):
        env.step({agent: int(pick.integers(N_ACTIONS)) for agent in env.agents})
        most = max(most, len(env.agents))
    assert most > 2


def test_evaluation_counts_lineages_and_each_generation():
    core = NurseryCore(build_config(NurseryConfig, {"generations": 3, "grow_age": 60, "max_cycles": 260}))
    expert = evaluate(core, SCRIPTED["expert"](core), 64, seed=5)
    negligent = evaluate(core, SCRIPTED["negligent"](core), 64, seed=5)
    assert expert["lineage_length"] > 2.5 and negligent["lineage_length"] == 1.0
    assert expert["gen1_baby_survival"] > 0.9 and expert["gen2_baby_survival"] > 0.9
    assert expert["gen3_babies_born"] > 0 and negligent["gen2_babies_born"] == 0
    assert expert["gen1_mothers"] == 2 * 64  # every founder, once per episode
    # A grown baby counts as survived: overall survival is not lowered by babies leaving to be mothers.
    assert expert["baby_survival_rate"] > 0.9
    one = NurseryCore(NurseryConfig())
    assert "lineage_length" not in evaluate(one, SCRIPTED["expert"](one), 8, seed=5)


def test_renders_show_generations():
    import os

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    from worlds.nursery.render import GENERATION_RINGS, Renderer

    core = NurseryCore(build_config(NurseryConfig, GENTLE))
    state = scenario(core, mothers=[(2, 2), (5, 5), (8, 8), None, None, None], babies=[(2, 3), (5, 6)])
    frame = Renderer(core).draw(state, 0)
    assert frame.ndim == 3 and frame.shape[2] == 3
    gold = np.all(frame == np.array(GENERATION_RINGS[1], dtype=frame.dtype), axis=-1)
    assert gold.any(), "the generation-2 mother's ring is drawn in its colour"


CHAIN = ["--set", "generations=3", "--set", "grow_age=30", "--set", "max_cycles=130"]
TINY = ["--method", "ppo", "--seed", "3", "--train-set", "worlds=8", "--train-set", "rollout=8",
        "--train-set", "hidden=16"]  # fmt: skip


def test_ablating_in_one_generation_leaves_the_others_intact():
    from analysis.lineage import AblatedIn
    from caring.networks import MotherNet
    from caring.policies import TrainedMother

    core = NurseryCore(build_config(NurseryConfig, GENTLE))
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, N_ACTIONS, hidden=32)
    state, obs = core.reset(rng.seed_key(torch.arange(64)))
    for _ in range(30):  # a few steps in, so that actions depend on what mothers see
        state, out = core.step(state, TrainedMother(net)(state, obs))
        obs = out.obs
    reference = torch.full((4, 32), 50.0)  # a mean far from the live activations: ablation bites
    second = core.generation == 1
    intact = TrainedMother(net)(state, obs)
    ablated = AblatedIn(net, second, "hook_trunk_2", list(range(32)), reference)(state, obs)
    assert torch.equal(ablated[:, ~second], intact[:, ~second])
    assert not torch.equal(ablated[:, second], intact[:, second])
    nowhere = AblatedIn(net, torch.zeros_like(second), "hook_trunk_2", list(range(32)), reference)
    assert torch.equal(nowhere(state, obs), intact)


def test_lineage_command_on_a_tiny_chain_run(tmp_path, capsys):
    import json
    import shutil

    from analysis.cli import main

    run, out = tmp_path / "run", tmp_path / "lineage"
    assert main(["train", "nursery", "--steps", "512", "--out", str(run), *CHAIN, *TINY]) == 0
    quick = ["--quick", "--episodes", "8", "--instances", "4", "--units", "4", "--random-sets", "1"]
    assert main(["lineage", str(run), "--out", str(out), *quick]) == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["intact"]) == 3 and [r["generation"] for r in report["ablated_in"]] == [1, 2, 3]
    assert len(report["top_units"]) == 4 and len(report["ablated_in"][0]["random"]) == 1
    assert "top 4 ablated in gen 3" in capsys.readouterr().out
    # Several runs pool: finished reports are reused, not recomputed; drops are intact minus ablated.
    pooled = tmp_path / "pooled"
    for i in range(2):
        shutil.copytree(out, pooled / f"run{i}")
    assert main(["lineage", str(run), str(run), "--out", str(pooled), *quick]) == 0
    assert capsys.readouterr().out.count("(finished earlier: reused)") == 2
    summary = json.loads((pooled / "summary.json").read_text())
    first = summary["generations"][0]  # founders' babies are born in every episode
    expected = report["intact"][0] - report["ablated_in"][0]["top"][0]
    assert first["top_drop"]["n"] == 2 and first["top_drop"]["mean"] == pytest.approx(expected)
    assert main(["lineage", str(run), str(run), *quick]) == 2
    assert "need --out" in capsys.readouterr().err
    flat = tmp_path / "flat"
    assert main(["train", "nursery", "--steps", "128", "--out", str(flat), *TINY]) == 0
    capsys.readouterr()
    assert main(["lineage", str(flat), *quick]) == 2
    assert "generations > 1" in capsys.readouterr().err
