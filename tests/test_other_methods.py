"""The defining mechanics of the other roads to care (issue 6), each on a case small enough to check by
hand: PPO-Lagrangian's multiplier and cost stream, choice altruism's reachable cells, the theory-of-mind
head's targets and gradient routing."""

import dataclasses

import pytest
import torch

from caring.config import TrainConfig
from caring.networks import MotherNet
from caring.schedules import BetaSchedule
from caring.tasks.nursery import NurseryTask
from caring.train import Trainer
from worlds.config import ConfigError
from worlds.grid import reachable_cells
from worlds.lava.config import LavaConfig
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import DOWN, LEFT, RIGHT, STAY, UP, NurseryCore
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
    buf, stats, _ = trainer.collect_rollout()
    assert set(buf["r_mat"].unique().tolist()) == {-1.0, 0.0}
    assert -float(buf["r_mat"].sum()) == stats["harm"] > 0


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
    buf, _, _ = trainer.collect_rollout()
    assert buf["r_mat"][:19].abs().sum() == 0  # no baby before birth_step = 20
    expected = NurseryTask().choice(trainer.core, trainer.state, 3).reshape(-1)
    kept = buf["done"][-1] == 0  # worlds that ended on the last step were reset since
    assert kept.any() and torch.equal(buf["r_mat"][-1][kept], expected[kept])
    assert 0 < float(buf["r_mat"][-1].max()) <= 1
    with pytest.raises(ConfigError, match="choice needs a baby"):
        Trainer(tmp_path / "lava", LavaConfig(), config)


def test_baby_moves_are_the_babys_own_steps():
    core = NurseryCore(NurseryConfig(n_hazards=2, n_predators=0))
    before = scenario(core, mothers=[(5, 5), (8, 8)], babies=[(5, 6), (2, 2)], hazards=[(1, 1), (1, 2)])
    after = dataclasses.replace(
        before, baby_pos=before.baby_pos.clone(), age=before.age + 1
    )  # a step ages them
    task = NurseryTask()
    assert task.baby_moves(before, after).tolist() == [[STAY, STAY]]
    for (dy, dx), move in (((-1, 0), UP), ((0, 1), RIGHT), ((1, 0), DOWN), ((0, -1), LEFT)):
        after.baby_pos[:, 0, 0] = before.baby_pos[:, 0, 0] + torch.tensor([dy, dx])
        assert task.baby_moves(before, after)[0, 0] == move
    carried = dataclasses.replace(after, carried_by=torch.tensor([[0], [-1]]))
    assert task.baby_moves(before, carried).tolist() == [[-1, STAY]]  # moved by its mother, not itself
    dead = dataclasses.replace(after, baby_alive=torch.tensor([[True], [False]]))
    assert task.baby_moves(before, dead)[0, 1] == -1
    newborn = dataclasses.replace(after, age=torch.tensor([[0], [1]]))  # a scheduled birth replaced baby 0
    assert task.baby_moves(dataclasses.replace(before, age=before.age + 7), newborn)[0, 0] == -1


def test_theory_of_mind_heads_learn_only_from_their_own_loss():
    torch.manual_seed(0)
    net = MotherNet(40, 9, 16, predicts_baby=True)
    obs = torch.randint(0, 256, (32, 40), dtype=torch.uint8)
    heads = {"policy": net.policy, "value_task": net.value_task, "value_mat": net.value_mat}

    def grads(loss: torch.Tensor) -> dict[str, float]:
        net.zero_grad()
        loss.backward()
        layers = {**heads, "baby_move": net.baby_move, "trunk_1": net.trunk_1}
        return {
            k: float(m.weight.grad.abs().sum()) if m.weight.grad is not None else 0.0
            for k, m in layers.items()
        }

    predicted = grads(torch.nn.functional.cross_entropy(net.predict_baby_move(obs), torch.zeros(32).long()))
    assert predicted["baby_move"] > 0 and predicted["trunk_1"] > 0
    assert all(predicted[k] == 0 for k in heads)  # the prediction error reaches no behaviour head
    logits, v_task, v_mat = net(obs)
    behaved = grads(logits.logsumexp(-1).sum() + v_task.sum() + v_mat.sum())
    assert behaved["baby_move"] == 0 and behaved["trunk_1"] > 0 and all(behaved[k] > 0 for k in heads)


def test_tom_without_its_loss_trains_exactly_as_ppo(tmp_path):
    """The prediction head is created last and reached by nothing else: with tom_coef = 0 the mother is
    PPO's, bit for bit, and the head never moves; with its loss it learns."""
    base = {"worlds": 4, "rollout": 32, "hidden": 16, "steps": 3 * 4 * 2 * 32}
    runs = {}
    for name, method, coef in (("ppo", "ppo", 1.0), ("silent", "tom", 0.0), ("tom", "tom", 1.0)):
        trainer = Trainer(tmp_path / name, NurseryConfig(), TrainConfig(method=method, tom_coef=coef, **base))
        start = {k: v.clone() for k, v in trainer.net.state_dict().items()}
        (tmp_path / name).mkdir()
        trainer.run()
        runs[name] = (start, trainer.net.state_dict())
    ppo, silent, tom = runs["ppo"][1], runs["silent"][1], runs["tom"][1]
    assert all(torch.equal(ppo[k], silent[k]) for k in ppo)
    assert torch.equal(runs["silent"][0]["baby_move.weight"], silent["baby_move.weight"])
    assert not torch.equal(runs["tom"][0]["baby_move.weight"], tom["baby_move.weight"])
    assert not torch.equal(ppo["trunk_1.weight"], tom["trunk_1.weight"])  # the trunk hears both losses
    rows = (tmp_path / "tom" / "metrics.csv").read_text().splitlines()
    accuracy = [float(r.split(",")[rows[0].split(",").index("tom_accuracy")]) for r in rows[1:]]
    assert all(0 <= a <= 1 for a in accuracy[1:])  # updates after the births judge some moves
    with pytest.raises(ConfigError, match="tom needs a baby"):
        Trainer(tmp_path / "lava", LavaConfig(), TrainConfig(method="tom", **base))


def test_distance_fields_are_breadth_first_walks_through_open_cells():
    """worlds.grid.distance_field against a plain breadth-first search, on random grids with walls and
    sources anywhere: a walk enters only open cells, and a source on a closed cell (a baby on water)
    is reached from the open cells beside it."""
    from collections import deque

    from worlds.grid import UNREACHABLE, distance_field

    gen = torch.Generator().manual_seed(0)
    passable = torch.rand(6, 9, 12, generator=gen) < 0.7  # (H, W, N)
    sources = torch.rand(6, 9, 12, generator=gen) < 0.05
    field = distance_field(passable, sources)
    assert field.dtype == torch.int32 and field.shape == passable.shape
    H, W, N = passable.shape
    for n in range(N):
        want = [[0 if sources[r, c, n] else UNREACHABLE for c in range(W)] for r in range(H)]
        queue = deque((r, c) for r in range(H) for c in range(W) if sources[r, c, n])
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < H and 0 <= nc < W and passable[nr, nc, n] and want[nr][nc] > want[r][c] + 1:
                    want[nr][nc] = want[r][c] + 1
                    queue.append((nr, nc))
        assert field[:, :, n].tolist() == want, n
    assert (field == UNREACHABLE).any() and (field > 3).any()  # walls cut some cells off; walks are long
