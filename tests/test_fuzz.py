"""Random valid configs x random actions, invariants checked every step (>= 100,000 world-steps)."""

import random

import pytest
import torch

from worlds import rng
from worlds.config import build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import FLOOR, N_ACTIONS, NurseryCore, chebyshev

N_CONFIGS, BATCH, STEPS = 25, 48, 90  # 108,000 world-steps


def random_config(r: random.Random) -> NurseryConfig:
    h, w = r.randint(7, 14), r.randint(7, 14)
    interior = (h - 2) * (w - 2)
    n_mothers, n_predators = r.randint(1, 4), r.randint(0, 3)
    orphans = r.choice([0, 0, r.randint(1, 3)])
    n_food = r.randint(1, 8)
    slots = n_mothers + orphans
    n_hazards = r.randint(0, min(10, interior - slots - n_predators - n_food))
    n_walls = r.randint(0, max(0, min(8, interior - slots - n_predators - n_food - n_hazards)))
    hunger_max = r.randint(3, 40)
    energy_max = r.randint(10, 120)
    return build_config(
        NurseryConfig,
        dict(
            height=h,
            width=w,
            n_mothers=n_mothers,
            orphans=orphans,
            care_reach=r.choice(["adjacent", "cell"]),
            hearing=r.choice(["nearest", "marked", "several"]),
            cries_heard=r.randint(2, 8),
            n_predators=n_predators,
            n_food=n_food,
            n_hazards=n_hazards,
            n_walls=n_walls,
            food_regrow=r.randint(1, 40),
            view_radius=r.randint(1, 4),
            max_cycles=r.randint(15, 70),
            energy_max=energy_max,
            energy_start=r.randint(1, energy_max),
            food_energy=r.randint(1, 40),
            carry_cost=r.randint(0, 2),
            feed_cost=r.randint(0, 10),
            shoo_radius=r.randint(1, 3),
            birth_step=r.randint(0, 30),
            birth_place=r.choice(["beside", "anywhere"]),
            births_per_life=r.randint(0, 3),
            rebirth_delay=r.randint(1, 10),
            baby_reward_weight=r.random(),
            hunger_max=hunger_max,
            cry_threshold=r.randint(1, hunger_max),
            feed_amount=r.randint(1, 40),
            baby_health=r.randint(1, 4),
            baby_move_period=r.randint(1, 4),
            curiosity=r.random(),
            baby_sight=r.randint(1, 5),
            grow_age=r.randint(1, 60),
            baby_markers=r.choice(["kin", "novel", "swapped"])
            if n_mothers > 1
            else r.choice(["kin", "novel"]),
            predator_speed=r.random(),
            predator_bite=r.randint(1, 3),
            predator_stun=r.randint(0, 15),
            birth_interval=r.choice([0, r.randint(1, 30)]),
        ),
    )


def check_invariants(core, before, after, out):
    """`before` is the state the step started from (after any auto-reset), `after` the one it made.
    States are batch-last: positions (2, E, B), per-slot values (E, B), grids (H, W, B)."""
    cfg, s, A, M = core.config, after, core.A, core.M
    H, W = cfg.height, cfg.width

    def inside(pos):
        return ((pos[0] >= 0) & (pos[0] < H) & (pos[1] >= 0) & (pos[1] < W)).all()

    assert inside(s.mother_pos) and inside(s.baby_pos) and inside(s.predator_pos)
    assert ((core._at(s.cells, s.mother_pos) == FLOOR) | ~s.mother_alive).all(), "living mother off the floor"
    assert ((core._at(s.cells, s.baby_pos) == FLOOR) | ~s.baby_alive).all(), "living baby off the floor"
    assert (core._at(s.cells, s.predator_pos) == FLOOR).all(), "predator off the floor"
    assert ((s.energy >= 0) & (s.energy <= cfg.energy_max)).all()
    assert ((s.energy >= 1) | ~s.mother_alive).all(), "a living mother with no energy"
    assert ((s.hunger >= 0) & (s.hunger <= cfg.hunger_max)).all()
    assert ((s.health >= 1) | ~s.baby_alive).all() and (s.health <= cfg.baby_health).all()
    assert ((s.food_timer >= -1) & (s.food_timer <= cfg.food_regrow)).all()
    assert torch.equal((s.food_timer >= 0).sum((0, 1)), (before.food_timer >= 0).sum((0, 1)))
    assert torch.equal(s.t, before.t + 1)
    assert torch.equal(out.truncated, s.t >= cfg.max_cycles)
    assert (s.births_left >= 0).all()

    ev = {k: (v.bool() if k not in ("baby_distance", "baby_hunger") else v).T for k, v in out.events.items()}
    # Orphans (the slots after the M mothers' ones) never have a mother, and report no events: the
    # event checks below read the mothers' slots, the state checks every slot.
    assert not (s.mother_alive[M:] | s.joined[M:]).any() and not any(v[M:].any() for v in ev.values())
    born = s.baby_alive & ~before.baby_alive
    # Dead mothers never act or come back; death is reported exactly once.
    assert not (s.mother_alive & ~before.mother_alive).any(), "a dead mother came back"
    assert torch.equal(ev["mother_died"], before.mother_alive & ~s.mother_alive)
    dead = ~before.mother_alive
    assert torch.equal(torch.where(dead, before.mother_pos, s.mother_pos), s.mother_pos)
    assert not (dead & (ev["ate"] | ev["fed"] | ev["picked_up"] | ev["guarded"])).any()
    reward = out.reward.T
    assert (reward[~s.mother_alive] == 0).all() and ((reward >= 0) & (reward <= 1)).all()
    assert (out.obs[~s.mother_alive.T] == 0).all()
    # Babies appear only by birth and vanish only by death; births use up births_left. A birth where a
    # baby lived is a scheduled one, and that baby left (grew up); otherwise no baby leaves.
    assert torch.equal(s.baby_alive[:M], (before.baby_alive[:M] & ~ev["baby_died"][:M]) | ev["baby_born"][:M])
    assert torch.equal(ev["grew_up"], ev["baby_born"] & before.baby_alive & ~ev["baby_died"])
    assert not (ev["grew_up"] & ~before.baby_alive).any()
    if not cfg.birth_interval:
        assert not (ev["baby_born"] & before.baby_alive).any()
    assert not (ev["baby_died"] & ~before.baby_alive).any()
    assert torch.equal(s.births_left[:M], before.births_left[:M] - ev["baby_born"][:M].long())
    # An orphan is born as the others are, using up its births: each birth makes a new baby, except a
    # scheduled one while the last lives (that one left).
    used = (before.births_left[M:] - s.births_left[M:]).bool()
    assert torch.equal(before.births_left[M:] - s.births_left[M:], used.long())
    assert torch.equal(born[M:], used & ~before.baby_alive[M:])
    assert cfg.birth_interval or not (used & before.baby_alive[M:]).any()
    assert not (ev["baby_harm_hazard"] & ~ev["baby_died"]).any(), "water is always fatal"
    # Carrying is consistent: the carrier lives, holds one baby, and the baby is where she is.
    carried = s.carried_by >= 0
    assert not (carried & ~s.baby_alive).any()
    carrier_alive = torch.gather(s.mother_alive, 0, s.carried_by.clamp(min=0))
    assert not (carried & ~carrier_alive).any()
    carrier_pos = torch.gather(s.mother_pos, 1, s.carried_by.clamp(min=0)[None].expand(2, -1, -1))
    assert torch.equal(torch.where(carried, carrier_pos, s.baby_pos), s.baby_pos)
    per_mother = (s.carried_by[None] == torch.arange(A)[:, None, None]).sum(1)  # (mothers, B)
    assert (per_mother <= 1).all() and torch.equal(ev["carrying"], per_mother == 1)
    # Events mirror the state.
    assert torch.equal(ev["baby_alive"][:M], s.baby_alive[:M])
    distance = torch.where(s.baby_alive, chebyshev(s.mother_pos, s.baby_pos), -1)
    assert torch.equal(ev["baby_distance"][:M], distance[:M])
    # A mother reaches only babies within her reach (her own cell with care_reach="cell").
    # FEED and CARRY do not move her, and babies move after them: the step's positions tell.
    took = ev["fed"] | ev["picked_up"]
    near = chebyshev(s.mother_pos[:, :, None], before.baby_pos[:, None]) <= core.reach  # (mothers, babies, B)
    assert not (took & ~(near & before.baby_alive[None]).any(1)).any(), "tended a baby out of reach"


@pytest.mark.parametrize("chunk", range(5))
def test_fuzz_random_configs_and_actions(chunk):
    steps_done = 0
    for index in range(chunk * N_CONFIGS // 5, (chunk + 1) * N_CONFIGS // 5):
        r = random.Random(index)
        core = NurseryCore(random_config(r))
        gen = torch.Generator().manual_seed(index)
        state, _ = core.reset(rng.seed_key(torch.arange(BATCH) + 1000 * index))
        for _ in range(STEPS):
            actions = torch.randint(0, N_ACTIONS, (BATCH, core.A), generator=gen)
            before = state
            state, out = core.step(state, actions)
            check_invariants(core, before, state, out)
            steps_done += BATCH
            done = out.truncated | ~state.mother_alive.any(0)
            if done.any():
                state, obs = core.reset_done(state, out.obs, done)
                assert torch.equal(obs, core.observe(state))  # patched observations = rebuilt ones
    assert steps_done == N_CONFIGS // 5 * BATCH * STEPS
