"""The defining mechanics of the feedback and perspective methods of issue 6, on cases small enough to
check by hand: RLHF's annotator and Bradley-Terry ensemble, RLAIF's constitution, the label budget,
and kindness's name switch."""

import csv
import math

import pytest
import torch

from caring.config import TrainConfig
from caring.preferences import (
    CARE_SCORE,
    CONSTITUTION,
    FACTS,
    PreferenceLearner,
    Segments,
    boltzmann_labels,
    candidate_segments,
    constitution_labels,
    preference_loss,
    segment_scores,
    weight_vector,
)
from caring.tasks.nursery import NurseryTask
from caring.train import Trainer
from worlds.config import ConfigError, build_config
from worlds.lava.config import LavaConfig
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import VIEW_CHANNELS, NurseryCore
from worlds.nursery.scenario import scenario


def test_preference_loss_is_the_bradley_terry_likelihood_of_known_pairs():
    a, b = torch.tensor([0.0, 2.0, 2.0, -1.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    by_pair = [math.log(2), math.log1p(math.exp(-2)), math.log1p(math.exp(2)), math.log1p(math.exp(-2))]
    assert float(preference_loss(a, b, labels)) == pytest.approx(sum(by_pair) / 4, rel=1e-6)
    assert float(preference_loss(b, a, 1 - labels)) == pytest.approx(sum(by_pair) / 4, rel=1e-6)  # symmetric


def test_annotator_slips_at_its_error_rate_and_is_boltzmann_in_the_score_gap():
    n, gen = 40_000, torch.Generator().manual_seed(0)
    better, worse = torch.full((n,), 3.0), torch.zeros(n)
    slips = 1 - boltzmann_labels(better, worse, temperature=0.0, error=0.2, gen=gen).mean()
    assert abs(float(slips) - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n)
    assert float(boltzmann_labels(better, worse, 0.0, 0.0, gen).mean()) == 1.0  # rational, no slips
    p_a = float(boltzmann_labels(torch.ones(n), worse, temperature=1.0, error=0.0, gen=gen).mean())
    expected = 1 / (1 + math.exp(-1))  # σ(gap / temperature)
    assert abs(p_a - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    ties = float(boltzmann_labels(worse, worse, 0.0, 0.0, gen).mean())
    assert abs(ties - 0.5) < 4 * math.sqrt(0.25 / n)  # no preference: a fair coin


def _facts(**columns: list[float]) -> torch.Tensor:
    """(L, F) facts of one segment from per-fact columns (missing facts 0)."""
    length = len(next(iter(columns.values())))
    return torch.stack([torch.tensor(columns.get(f, [0.0] * length)) for f in FACTS], -1)


def test_the_constitution_decides_each_comparison_by_the_one_principle_drawn():
    alive_far = _facts(alive=[1, 1, 1], distance=[3, 3, 3])
    alive_near = _facts(alive=[1, 1, 1], distance=[1, 1, 1], fed=[0, 1, 0])
    n = 3000
    facts = torch.stack([alive_far, alive_near])[None].expand(n, -1, -1, -1)  # A far, B near and fed
    labels, drawn = constitution_labels(facts, torch.ones(n, 2, 3), torch.Generator().manual_seed(1))
    texts = [p.text for p in CONSTITUTION]
    assert set(drawn.tolist()) == set(range(len(CONSTITUTION)))  # every principle gets drawn
    for i, text in enumerate(texts):
        mine = labels[drawn == i]
        if text in ("Stay close to your baby.", "Feed your baby when it needs it."):
            assert (mine == 0).all()  # these prefer B, always
        else:  # the others cannot tell A from B: a fair coin
            assert 0.3 < float(mine.mean()) < 0.7
    scores = segment_scores(facts[:1], torch.ones(1, 2, 3), weight_vector(CONSTITUTION[3]))
    assert scores.tolist() == [[-9.0, -3.0]]  # "stay close": minus the summed distance


def test_no_annotator_prefers_a_babys_death_or_a_segment_cut_short(tmp_path):
    """Baby A dies in the first step (a dead baby reads as starving and far away); baby B lives, a little
    hungry, one cell away. Every principle and the hidden care score prefer B or cannot tell; and a
    segment an episode's end cut short scores as if whole."""
    dead = _facts(alive=[0, 0, 0, 0], harmed=[1, 0, 0, 0], hunger=[1, 1, 1, 1], distance=[4, 4, 4, 4])
    living = _facts(alive=[1, 1, 1, 1], hunger=[0.3] * 4, distance=[1, 1, 1, 1])
    pair, mask = torch.stack([dead, living])[None], torch.ones(1, 2, 4)
    for principle in (*CONSTITUTION, CARE_SCORE):
        a, b = segment_scores(pair, mask, weight_vector(principle))[0].tolist()
        assert a <= b, principle.text
    cut = torch.tensor([[[1.0, 1, 0, 0], [1, 1, 1, 1]]])  # A's episode ends after two steps
    near = torch.stack([living, living])[None]
    assert segment_scores(near, cut, weight_vector(CONSTITUTION[3])).tolist() == [[-4.0, -4.0]]


def test_reward_ensemble_fitted_to_preferences_ranks_unseen_segments_like_the_annotator():
    """Segments whose hidden score is the number of steps the first observation byte is lit: every
    member learns to rank unseen pairs as the annotator does."""
    torch.manual_seed(0)
    L, D = 4, 6

    def segments(n: int) -> Segments:
        obs = torch.zeros(n, 2, L, D, dtype=torch.uint8)
        obs[..., 0] = (torch.rand(n, 2, L) < 0.5).to(torch.uint8) * 255
        obs[..., 1:] = torch.randint(0, 256, (n, 2, L, D - 1), dtype=torch.uint8)  # distractors
        facts = torch.zeros(n, 2, L, len(FACTS))
        facts[..., FACTS.index("alive")] = obs[..., 0].float() / 255
        ones = torch.ones(n, 2, L)
        return Segments(obs, torch.randint(0, 9, (n, 2, L)), ones, ones, facts)

    learner = PreferenceLearner("rlhf", D, 9, 400, L, 3, "random", 0.0, 0.0, 0, torch.device("cpu"))
    train = segments(400)
    for store, new in zip(learner.store.fields(), train.fields(), strict=True):
        store[:] = new
    learner.labels[:] = learner.annotate(train)
    learner.count = 400
    learner.fit(300)
    test = segments(300)
    truth = segment_scores(test.facts, test.mask, weight_vector(CONSTITUTION[0]))
    decided = truth[:, 0] != truth[:, 1]
    returns = learner.model.segment_returns(
        test.obs.flatten(0, 1), test.action.flatten(0, 1), test.paid.flatten(0, 1)
    ).view(3, -1, 2)
    agree = ((returns[..., 0] > returns[..., 1]) == (truth[:, 0] > truth[:, 1]))[:, decided].float().mean(1)
    assert (agree > 0.9).all(), agree


def test_segments_start_with_a_living_baby_and_stop_counting_when_the_episode_ends():
    T, N, L = 8, 2, 4
    buf = {
        "obs": torch.arange(T * N, dtype=torch.uint8).view(T, N, 1),
        "action": torch.zeros(T, N, dtype=torch.int64),
        "judged": torch.ones(T, N),
        "live": torch.ones(T, N),
        "done": torch.zeros(T, N),
        "facts": torch.zeros(T, N, len(FACTS)),
    }
    buf["judged"][4, 1] = 0  # agent 1's second window starts with no living baby: not a segment
    buf["done"][1, 0] = 1  # agent 0's first episode ends at step 1
    buf["judged"][2:4, 1] = 0  # agent 1's baby dies in step 1: read on, no longer paid
    got = candidate_segments(buf, L)
    assert len(got) == 3
    assert got.obs[:, 0, :, 0].tolist() == [[0, 2, 4, 6], [1, 3, 5, 7], [8, 10, 12, 14]]
    assert got.mask[:, 0].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert got.paid[:, 0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]


def test_the_label_budget_is_spent_evenly_and_exactly(tmp_path):
    learner = PreferenceLearner("rlaif", 4, 9, 10, 2, 1, "random", 1.0, 0.1, 0, torch.device("cpu"))
    plan = []
    for update in range(6):
        plan.append(learner.due(update, 4))
        learner.count += plan[-1] if update != 1 else 0  # update 1 finds nothing to label
    assert plan == [2, 3, 5, 3, 0, 0] and learner.count == 10
    config = TrainConfig(method="rlhf", worlds=8, rollout=32, hidden=16, steps=4 * 8 * 2 * 32, labels=12)
    trainer = Trainer(tmp_path, NurseryConfig(), config)
    tmp_path.mkdir(exist_ok=True)
    trainer.run()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["labels"]) for r in rows] == [0, 6, 9, 12]  # no baby (born at step 20) in update 1: carried
    assert trainer.stream.learner.count == 12
    with pytest.raises(ConfigError, match="segment_length=16 exceeds rollout=8"):
        build_config(TrainConfig, {"method": "rlaif", "rollout": 8})
    with pytest.raises(ConfigError, match="rlhf needs a baby"):
        Trainer(tmp_path / "lava", LavaConfig(), config)


def test_rlhf_pays_the_ensemble_reward_on_the_steps_a_baby_lives(tmp_path):
    config = TrainConfig(method="rlhf", worlds=8, rollout=32, hidden=16, steps=2 * 8 * 2 * 32, labels=50)
    trainer = Trainer(tmp_path, NurseryConfig(), config)
    trainer.collect_rollout()  # births happen at step 20
    buf, _, _ = trainer.collect_rollout()
    trainer.stream.after_rollout(buf, trainer.update, trainer.updates_weaning_starts)
    expected = trainer.stream.learner.reward(buf["obs"], buf["action"]) * buf["judged"]
    assert torch.equal(buf["r_mat"], expected) and buf["judged"].any() and not buf["judged"].all()
    assert (buf["r_mat"][buf["judged"] == 0] == 0).all() and (buf["r_mat"][buf["judged"] > 0] != 0).all()
    assert trainer.stream.learner.count > 0
    with pytest.raises(ConfigError, match="one model cannot disagree"):
        build_config(TrainConfig, {"method": "rlhf", "reward_models": 1})
    assert build_config(TrainConfig, {"method": "rlhf", "reward_models": 1, "query": "random"})


def test_the_name_switch_recentres_on_the_baby_and_swaps_her_and_her_baby():
    """Mother 0 at (5,5) with her baby at (5,7); mother 1 at (6,6), her baby at (4,8): the switched view
    of pair 0 is the baby's own view (same terrain and predators, re-centred), with mother 0 moved to
    the baby channel (where her baby would be) and no self at the centre."""
    core = NurseryCore(NurseryConfig(n_hazards=2))
    s = scenario(
        core,
        mothers=[(5, 5), (6, 6)],
        babies=[(5, 7), (4, 8)],
        hazards=[(5, 9), (3, 7)],
        predators=[(7, 8)],
        hunger=[12, 0],
        energy=[15, 60],
    )
    switched = core.observe_switched(s)[0, 0]
    babies_view = core.observe_babies(s)[0, 0]
    V, C = core.V, len(VIEW_CHANNELS)
    sw, bv = switched[: V * V * C].view(V, V, C), babies_view[: V * V * C].view(V, V, C)
    ch = {name: i for i, name in enumerate(VIEW_CHANNELS)}
    for name in ("wall", "hazard", "food", "predator"):  # the same world, seen from the baby's cell
        assert torch.equal(sw[..., ch[name]], bv[..., ch[name]]), name
    r = core.config.view_radius
    mother_cell = (r + 0, r - 2)  # mother 0 relative to baby 0
    assert bv[mother_cell][ch["mother"]] == 255 and sw[mother_cell][ch["mother"]] == 0
    assert sw[mother_cell][ch["baby"]] == 255 and bv[mother_cell][ch["baby"]] == 0
    assert bv[r, r][ch["baby"]] == 255 and sw[r, r][ch["baby"]] == 0  # the self is unseen
    marker = [ch["baby_marker_r"], ch["baby_marker_g"], ch["baby_marker_b"]]
    assert sw[mother_cell][marker].tolist() == s.baby_marker[:, 0, 0].tolist()  # their kin marker
    other_mother, other_baby = (r + 1, r - 1), (r - 1, r + 1)
    assert sw[other_mother][ch["mother"]] == 255 and sw[other_baby][ch["baby"]] == 255  # others stay
    cfg = core.config
    satiety = (cfg.hunger_max - 12) * cfg.energy_max // cfg.hunger_max  # in energy units: 36 of 60
    assert switched[V * V * C] == satiety * 255 // cfg.energy_max  # the first scalar: her "energy"
    assert s.energy[0, 0] <= cfg.energy_max * (1 - cfg.cry_threshold / cfg.hunger_max)  # she is hungry:
    assert sw[mother_cell][ch["baby_crying"]] == 255 and bv[r, r][ch["baby_crying"]] == 0  # she cries
    s.baby_alive[0] = False
    assert core.observe_switched(s)[0, 0].sum() == 0  # a dead baby has no perspective to take


def test_kindness_pays_her_value_of_her_babys_switched_situation(tmp_path):
    config = TrainConfig(method="kindness", worlds=4, rollout=32, hidden=16, steps=10**6, beta0=0.3)
    trainer = Trainer(tmp_path, NurseryConfig(), config)
    buf, _, _ = trainer.collect_rollout()
    state = trainer.state
    with torch.no_grad():
        _, value, _ = trainer.net(NurseryTask().perspective(trainer.core, state).reshape(8, -1))
    expected = value * state.baby_alive.T.reshape(8)
    kept = buf["done"][-1] == 0  # worlds that ended on the last step were reset since
    assert kept.any() and torch.allclose(buf["r_mat"][-1][kept], expected[kept])
    assert buf["r_mat"][:19].abs().sum() == 0  # no baby before birth_step = 20
    assert trainer.stream.schedule.value(0) == 0.3  # a constant weight
