"""The defining mechanics of the other roads to care (issue 6), each on a case small enough to check by
hand: PPO-Lagrangian's multiplier and cost stream, choice altruism's reachable cells."""

import pytest
import torch

from caring.schedules import BetaSchedule
from caring.tasks.nursery import NurseryTask
from caring.train import TrainConfig, Trainer
from worlds.config import ConfigError
from worlds.grid import reachable_cells
from worlds.lava.config import LavaConfig
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import NurseryCore
from worlds.nursery.scenario import scenario


def test_lagrange_multiplier_rises_while_the_cost_exceeds_its_limit_and_falls_to_zero_below_it():
    s = BetaSchedule(kind="lagrangian", cost_limit=0.01, lagrange_lr=0.5)
    assert s.value(0) == 0.0  # λ = 0: plain PPO until the limit is broken
    rising = [s.step(t, harm=0.03) for t in range(3)]  # twice over the limit: λ += 0.5 * 2 per update
    assert s.multiplier == pytest.approx(3.0)
    assert rising == pytest.approx([1 / 2, 2 / 3, 3 / 4])  # β₁ = λ / (1 + λ)
    assert s.step(3, harm=0.01) == pytest.approx(3 / 4)  # at the limit: λ holds
    s.step(4, harm=0.0)  # below: λ -= 0.5 * 1
    assert s.multiplier == pytest.approx(2.5)
    again = BetaSchedule.from_json(s.to_json())
    assert again.step(5, 0.02) == s.step(5, 0.02)  # λ survives a JSON round trip (resume)
    for t in range(6, 20):
        s.step(t, harm=0.0)
    assert s.multiplier == 0.0 and s.value(20) == 0.0  # never negative


def test_ppo_lagrangian_second_stream_is_minus_the_harm_events(tmp_path):
    config = TrainConfig(method="ppo-lagrangian", worlds=8, rollout=48, hidden=16, steps=10**6)
    trainer = Trainer(tmp_path, NurseryConfig(), config)  # an untrained mother harms her baby often
    buf = trainer.collect_rollout()
    assert set(buf["r_mat"].unique().tolist()) == {-1.0, 0.0}
    assert -float(buf["r_mat"].sum()) == buf["stats"]["harm"] > 0


def _cells(rows: list[str]) -> torch.Tensor:
    """(H, W, 1) passable mask from a picture: '.' open, '#' blocked."""
    return torch.tensor([[c == "." for c in row] for row in rows])[:, :, None]


def test_reachable_cells_count_moves_through_open_cells_only():
    open_grid = _cells(["......."] * 7)
    centre = torch.tensor([3, 3]).view(2, 1, 1)
    assert [int(reachable_cells(open_grid, centre, n)) for n in (0, 1, 2, 3)] == [1, 5, 13, 25]
    corner = torch.tensor([0, 0]).view(2, 1, 1)
    assert int(reachable_cells(open_grid, corner, 2)) == 6  # the grid's edge cuts the diamond
    walled = _cells([
        ".....",
        ".###.",
        ".#.#.",
        ".....",
    ])  # fmt: skip
    inside = torch.tensor([2, 2]).view(2, 1, 1)
    assert int(reachable_cells(walled, inside, 1)) == 2  # only down is open
    assert int(reachable_cells(walled, inside, 3)) == 6  # out, then along the bottom row
    assert int(reachable_cells(walled, torch.tensor([1, 1]).view(2, 1, 1), 3)) == 0  # on a wall
    # Several agents over a batch of two worlds: (2, E=2, B=2) -> (2, 2).
    both = torch.cat([open_grid[:4, :5], walled], 2)
    starts = torch.tensor([[[3, 2], [0, 0]], [[2, 2], [0, 0]]])
    assert reachable_cells(both, starts, 1).tolist() == [[4, 2], [3, 3]]


def test_choice_is_the_share_of_dry_cells_a_living_baby_could_reach():
    core = NurseryCore(NurseryConfig(n_hazards=2, n_predators=0))
    s = scenario(
        core,
        mothers=[(5, 5), (8, 8)],
        babies=[(5, 6), (2, 2)],
        hazards=[(4, 6), (6, 6)],
    )
    choice = NurseryTask().choice(core, s, steps=1)  # (B=1, A=2)
    assert choice[0].tolist() == pytest.approx([3 / 5, 5 / 5])  # water above and below baby 0
    s.baby_alive[0] = False
    assert NurseryTask().choice(core, s, steps=1)[0, 0] == 0.0  # a dead baby has no choice


def test_choice_training_pays_the_after_step_choice_and_refuses_a_world_without_babies(tmp_path):
    config = TrainConfig(method="choice", worlds=4, rollout=40, hidden=16, choice_steps=3, steps=10**6)
    trainer = Trainer(tmp_path / "nursery", NurseryConfig(), config)
    buf = trainer.collect_rollout()
    assert buf["r_mat"][:19].abs().sum() == 0  # no baby before birth_step = 20
    expected = NurseryTask().choice(trainer.core, trainer.state, 3).reshape(-1)
    kept = buf["done"][-1] == 0  # worlds that ended on the last step were reset since
    assert kept.any() and torch.equal(buf["r_mat"][-1][kept], expected[kept])
    assert 0 < float(buf["r_mat"][-1].max()) <= 1
    with pytest.raises(ConfigError, match="baby to give choice to"):
        Trainer(tmp_path / "lava", LavaConfig(), config)
