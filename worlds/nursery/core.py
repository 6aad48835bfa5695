"""The nursery's one source of truth: B worlds stepped at once on torch tensors (any device).

`NurseryCore.step(state, actions)` is a pure function of a `NurseryState` and the mothers' actions
(gymnax style): it returns a new state, the mothers' observations, rewards, done flags and per-mother
event counts. There is no per-world Python loop; the only loops run over the few mother slots, to
resolve who gets a contested food patch or baby, in slot order.

Layout: the state is **batch-last** (structure of arrays): positions are (2, E, B) (row, col), per-slot
values (E, B), grids (H, W, B). Each world holds only a handful of entities, so with the batch
innermost every pairwise comparison (mothers x predators, viewers x babies, ...) is one long
contiguous loop; batch-first broadcasts over such tiny inner dimensions ran about 10x slower.
Observations, rewards and events come out batch-first, (B, A, ...), as training code expects.

Threats to a baby and the care that answers each:
  hunger    -> FEED (the baby cannot feed itself until it grows)
  predators -> SHOO (sends predators within `shoo_radius` back to their den)
  hazards   -> CARRY (a carried baby cannot crawl into water; young babies are drawn to it)

Generations (spec 001's chain, `generations` > 1): mother slots come in generations of `n_mothers`;
slot i's baby, once grown (`grow_age`), becomes mother i + n_mothers (exactly once), driven by whatever
drives every mother, and gives birth `birth_step` steps after she joins. Her mother's reward then counts
her: a mother is paid while her child lives, as a baby or as a mother. Later slots are unborn (not alive,
zero observations) until they join.

Pits: a hazard type no training world contains (`pit_share` > 0 turns that share of the hazard tiles
into pits; the trainer refuses such worlds), for testing trained mothers in a changed world. A pit is
water in every rule: it kills the mothers and babies that step in (counted as hazard harm and hazard
contacts), young babies are drawn to it, grown babies, predators and the scripted mothers keep out of
it, and it blocks the layout's connectivity. It looks different: it shares the "hazard" view channel
with water, but at `PIT_SHADE` (128) where water is ON (255), a value no trained network has seen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worlds import rng
from worlds.grid import UNREACHABLE, BatchLastState, connected, distance_field  # noqa: F401 (re-exported)
from worlds.nursery.config import NurseryConfig

# Mother actions.
STAY, UP, RIGHT, DOWN, LEFT, EAT, CARRY, FEED, SHOO = range(9)
ACTION_NAMES = ("stay", "up", "right", "down", "left", "eat", "carry", "feed", "shoo")
N_ACTIONS = len(ACTION_NAMES)
N_MOVES = 5  # STAY..LEFT: also the action set of baby brains

# Terrain codes. PIT is 6, not 3: the view reads each cell as code = terrain + 3 * food_ready (see
# `render_obs`), so terrain 3..5 would alias the food-bearing cells' codes; 6 and 9 are free.
FLOOR, WALL, HAZARD, PIT = 0, 1, 2, 6
PIT_SHADE = 128  # a pit's value in the "hazard" view channel (water is ON)


def is_hazard(terrain: torch.Tensor) -> torch.Tensor:
    """Deadly terrain (water or pit), elementwise: every rule that treats water treats pits alike."""
    return (terrain == HAZARD) | (terrain == PIT)


# Harm causes (also the suffixes of the per-cause harm events).
HARM_CAUSES = ("predator", "hazard", "hunger")

# The egocentric view: (2r+1) x (2r+1) cells x these channels, uint8 0..255, then these scalars.
VIEW_CHANNELS = (
    "wall", "hazard", "food", "mother", "predator", "baby",
    "baby_marker_r", "baby_marker_g", "baby_marker_b", "baby_crying",
)  # fmt: skip
SCALARS = (
    "energy", "birth_flag", "carrying", "kin_marker_r", "kin_marker_g", "kin_marker_b",
    "cry_heard", "cry_dy", "cry_dx", "time",
)  # fmt: skip
HEARD_MARKER = ("cry_marker_r", "cry_marker_g", "cry_marker_b")  # after SCALARS where hearing="marked"
FURTHER_CRY = ("heard", "dy", "dx", "marker_r", "marker_g", "marker_b")  # per cry, hearing="several"


def heard_names(hearing: str, cries_heard: int) -> tuple[str, ...]:
    """The scalars after SCALARS that `hearing` adds: the nearest cry's marker (marked, several), then
    (several) the k-th nearest cry's flag, direction and marker as cry{k}_..., k = 2..cries_heard."""
    if hearing == "nearest":
        return ()
    further = () if hearing == "marked" else FURTHER_CRY
    return HEARD_MARKER + tuple(f"cry{k}_{part}" for k in range(2, cries_heard + 1) for part in further)


ON = 255

# Kin markers (RGB). Mothers' markers come from the training palette; "novel" babies get a marker from
# the held-out palette, which no training config ever shows.
TRAIN_MARKERS = ((230, 60, 60), (60, 110, 235), (245, 205, 40), (165, 80, 225),
                 (245, 140, 35), (50, 200, 195), (150, 90, 40), (235, 235, 235))  # fmt: skip
NOVEL_MARKERS = ((250, 120, 200), (140, 210, 60), (90, 60, 140), (20, 130, 80),
                 (200, 160, 140), (120, 120, 20), (0, 170, 240), (170, 20, 90))  # fmt: skip

# Random streams (any distinct ints).
_S_LAYOUT, _S_MARKER, _S_STEP, _S_BIRTH_PLACE, _S_PIT = range(1, 6)

# Per-mother events reported every step; infos and metrics derive from these.
EVENTS = (
    "ate", "fed", "fed_own", "picked_up", "dropped", "carrying", "could_guard", "guarded", "mother_hazard",
    "mother_died", "baby_born", "baby_harm_predator", "baby_harm_hazard", "baby_harm_hunger",
    "baby_died", "baby_alive", "baby_distance", "baby_hunger", "grew_up",
)  # fmt: skip


@dataclass
class NurseryState(BatchLastState):
    """Everything that changes during an episode, batch-last. Baby slot i belongs to mother i."""

    key: torch.Tensor  # (B,) int64: this episode's random key
    t: torch.Tensor  # (B,) int64: steps taken this episode
    cells: torch.Tensor  # (H, W, B) uint8: FLOOR / WALL / HAZARD / PIT
    food_timer: torch.Tensor  # (H, W, B) int16: 0 ready, >0 regrowing, -1 no patch
    hazard_pos: torch.Tensor  # (2, K, B) int64: water and pits alike
    mother_pos: torch.Tensor  # (2, A, B) int64
    energy: torch.Tensor  # (A, B) int64
    mother_alive: torch.Tensor  # (A, B) bool
    joined: torch.Tensor  # (A, B) bool: the slot's mother entered the world (founders at reset)
    births_left: torch.Tensor  # (A, B) int64
    next_birth: torch.Tensor  # (A, B) int64: step at which the next birth may happen
    has_given_birth: torch.Tensor  # (A, B) bool: the reward switches to the baby from then on
    kin_marker: torch.Tensor  # (3, A, B) uint8
    baby_pos: torch.Tensor  # (2, A, B) int64
    baby_alive: torch.Tensor  # (A, B) bool: born and not yet dead
    hunger: torch.Tensor  # (A, B) int64
    health: torch.Tensor  # (A, B) int64
    age: torch.Tensor  # (A, B) int64
    baby_marker: torch.Tensor  # (3, A, B) uint8
    carried_by: torch.Tensor  # (A, B) int64: carrying mother's slot, or -1
    predator_pos: torch.Tensor  # (2, P, B) int64
    predator_den: torch.Tensor  # (2, P, B) int64
    predator_rest: torch.Tensor  # (P, B) int64: steps left resting in the den


@dataclass
class StepOutput:
    obs: torch.Tensor  # (B, A, obs_dim) uint8
    reward: torch.Tensor  # (B, A) float32
    terminated: torch.Tensor  # (B, A) bool: the mother died this step
    truncated: torch.Tensor  # (B,) bool: the episode hit max_cycles
    events: dict[str, torch.Tensor]  # name -> (B, A) int64 (views of one (B, A, len(EVENTS)) tensor)


def fold(op, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Reduce a short dimension with an elementwise op. Torch's own reductions over a short
    non-innermost dimension of a batch-last tensor run ~100x slower than these few elementwise ops."""
    parts = x.unbind(dim)
    if not parts:
        empty = list(x.shape)
        del empty[dim]
        return torch.zeros(empty, dtype=x.dtype, device=x.device)
    out = parts[0]
    for part in parts[1:]:
        out = op(out, part)
    return out


def any_(x: torch.Tensor, dim: int) -> torch.Tensor:
    return fold(torch.logical_or, x, dim)


def argmin_(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, first index of the min) over a short dimension, by elementwise ops (see `fold`)."""
    parts = x.unbind(dim)
    best, index = parts[0], torch.zeros_like(parts[0], dtype=torch.int64)
    for i, part in enumerate(parts[1:], 1):
        better = part < best
        best, index = torch.where(better, part, best), torch.where(better, i, index)
    return best, index


def move(pos: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Positions (2, E, B) after moves (E, B) in STAY..LEFT (arithmetic: faster than a table lookup)."""
    dy = (action == DOWN).long() - (action == UP).long()
    dx = (action == RIGHT).long() - (action == LEFT).long()
    return pos + torch.stack([dy, dx])


def chebyshev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Chebyshev distance between positions (2, ...) -> (...)."""
    d = (a - b).abs()
    return torch.maximum(d[0], d[1])


class NurseryCore:
    """Rules of the nursery, batched. Holds only the config and constant tables; state is passed in."""

    def __init__(self, config: NurseryConfig | None = None, device: torch.device | str = "cpu"):
        self.config = cfg = config or NurseryConfig()
        self.device = dev = torch.device(device)
        self.M = cfg.n_mothers * cfg.generations  # mother slots (agents), every generation's
        self.A = self.M + cfg.orphans  # baby slots: each mother's, then the orphans' (no mother: never alive)
        self.P, self.K = cfg.n_predators, cfg.n_hazards
        self.founders = cfg.n_mothers  # the first generation's slots; slot i's child mother is i + founders
        self.H, self.W = cfg.height, cfg.width
        r = cfg.view_radius
        self.V = 2 * r + 1
        C = len(VIEW_CHANNELS)
        self.scalar_names = SCALARS + heard_names(cfg.hearing, cfg.cries_heard)
        self.scalar_cells = -(-len(self.scalar_names) // C)  # scalars ride in extra cells after the view
        self.view_dim = self.V * self.V * C
        self.obs_dim = self.view_dim + self.scalar_cells * C
        self.train_markers = torch.tensor(
            TRAIN_MARKERS, dtype=torch.uint8, device=dev
        ).T.contiguous()  # (3, 8)
        self.novel_markers = torch.tensor(NOVEL_MARKERS, dtype=torch.uint8, device=dev).T.contiguous()
        self.slots = torch.arange(self.A, device=dev)
        self.generation = self.slots // self.founders  # (A,) 0 for the founders
        self.has_child_slot = (self.slots < self.M - self.founders)[:, None]  # (A, 1)
        self.orphan = (self.slots >= self.M)[:, None]  # (A, 1): a baby slot with no mother
        # baby_markers="both": orphan i wears mother i's foster marker (an orphan past the mothers, its own)
        self.foster_partner = torch.where(
            self.orphan[:, 0] & (self.slots < 2 * self.M), self.slots - self.M, self.slots
        )
        self.reach = 0 if cfg.care_reach == "cell" else 1  # FEED/CARRY reach (Chebyshev)
        # Cell code = terrain + 3 * food_ready  ->  (wall, hazard, food) view channels. Food shows
        # only on floor; a wall or hazard with a food timer (never in a reset world) hides it.
        table = torch.zeros(PIT + 3 + 1, C, dtype=torch.uint8, device=dev)
        for food in (0, 3):
            table[WALL + food, 0] = ON
            table[HAZARD + food, 1] = ON
            table[PIT + food, 1] = PIT_SHADE
        table[FLOOR + 3, 2] = ON
        self.code_table = table
        ys, xs = torch.meshgrid(
            torch.arange(self.V, device=dev), torch.arange(self.V, device=dev), indexing="ij"
        )
        # Gather offsets of the view cells in the padded grid, then zeros for the scalar cells
        # (whatever they gather is overwritten by the scalars).
        self.window_offsets = F.pad((ys * (self.W + 2 * r) + xs).reshape(-1), (0, self.scalar_cells))
        iy, ix = torch.meshgrid(
            torch.arange(1, self.H - 1, device=dev), torch.arange(1, self.W - 1, device=dev), indexing="ij"
        )
        self.interior = torch.stack([iy.reshape(-1), ix.reshape(-1)])  # (2, L)
        self.channel = {name: i for i, name in enumerate(VIEW_CHANNELS)}

    # ------------------------------------------------------------------ reset
    def reset(self, keys: torch.Tensor) -> tuple[NurseryState, torch.Tensor]:
        """New episodes for worlds with random keys (B,) -> (state, obs (B, A, obs_dim))."""
        cfg, dev, A, P, K = self.config, self.device, self.A, self.P, self.K
        keys = keys.to(dev)
        B = keys.shape[0]
        # Random layouts, redrawn for any world whose open floor is not all connected (so no mother,
        # baby or food patch is ever sealed off by walls and water). A world keeps its first connected
        # draw whatever else shares its batch; only the worlds whose latest draw is unchecked are checked
        # and redrawn.
        picks, cells = self._layout(keys, 0)
        todo = torch.arange(B, device=dev)
        for attempt in range(1, 64):
            bad = todo[~self._connected(cells[..., todo])]
            if bad.numel() == 0:
                break
            picks[..., bad], cells[..., bad] = self._layout(keys[bad], attempt)
            todo = bad
        ends = torch.tensor([cfg.n_walls, K, cfg.n_food, A, P]).cumsum(0).tolist()
        hazards, food = picks[:, ends[0] : ends[1]], picks[:, ends[1] : ends[2]]
        mothers, predators = picks[:, ends[2] : ends[3]], picks[:, ends[3] : ends[4]]
        food_timer = self._paint(torch.full((self.H, self.W, B), -1, dtype=torch.int16, device=dev), food, 0)
        if cfg.pit_share > 0:  # own stream: worlds without pits draw exactly what they always drew
            pit = rng.uniform(keys, torch.zeros_like(keys), _S_PIT, K) < cfg.pit_share  # (K, B)
            flat = cells.reshape(self.H * self.W, B)
            terrain = torch.where(pit, PIT, HAZARD).to(cells.dtype)
            cells = flat.scatter(0, hazards[0] * self.W + hazards[1], terrain).view_as(cells)

        zeros_t = torch.zeros(B, dtype=torch.int64, device=dev)
        marker_draw = rng.uniform(keys, zeros_t, _S_MARKER, self.train_markers.shape[1])
        marker_order = torch.argsort(marker_draw, dim=0, stable=True)[:A]  # (A, B): distinct per world
        kin = self.train_markers[:, marker_order]  # (3, A, B)
        novel = self.novel_markers[:, marker_order]  # (3, A, B): the foster marker of each slot
        baby_marker = {
            "kin": kin,
            "swapped": kin.roll(1, dims=1),
            "novel": novel,
            "both": torch.where(self.orphan[None], novel[:, self.foster_partner], kin),
        }[cfg.baby_markers]
        zeros = torch.zeros(A, B, dtype=torch.int64, device=dev)
        founder = (self.slots < self.founders)[:, None].expand(A, B)
        state = NurseryState(
            key=keys, t=zeros_t, cells=cells, food_timer=food_timer, hazard_pos=hazards,
            mother_pos=mothers, energy=zeros + cfg.energy_start,
            mother_alive=founder.clone(), joined=founder.clone(),
            births_left=zeros + cfg.births_per_life, next_birth=zeros + cfg.birth_step,
            has_given_birth=torch.zeros(A, B, dtype=torch.bool, device=dev), kin_marker=kin,
            baby_pos=mothers.clone(), baby_alive=torch.zeros(A, B, dtype=torch.bool, device=dev),
            hunger=zeros, health=zeros, age=zeros, baby_marker=baby_marker, carried_by=zeros - 1,
            predator_pos=predators, predator_den=predators.clone(),
            predator_rest=torch.zeros(P, B, dtype=torch.int64, device=dev),
        )  # fmt: skip
        state, _, _ = self._births(state, self._draws(state)["birth"])  # birth_step = 0 gives birth at reset
        return state, self.observe(state)

    def _layout(self, keys: torch.Tensor, attempt: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a layout: a random permutation of interior cells per world, whose first cells become
        walls, then hazards, food, mothers and predators. -> (picks (2, L, B), cells (H, W, B))."""
        cfg = self.config
        draw = rng.uniform(keys, torch.full_like(keys, attempt), _S_LAYOUT, self.interior.shape[1])
        order = torch.argsort(draw, dim=0, stable=True)  # (L, B)
        picks = self.interior.index_select(1, order.reshape(-1)).view(2, *order.shape)  # (2, L, B)
        cells = torch.zeros(self.H, self.W, keys.shape[0], dtype=torch.uint8, device=self.device)
        cells[0] = cells[-1] = cells[:, 0] = cells[:, -1] = WALL
        cells = self._paint(cells, picks[:, : cfg.n_walls], WALL)
        return picks, self._paint(cells, picks[:, cfg.n_walls : cfg.n_walls + self.K], HAZARD)

    def _connected(self, cells: torch.Tensor) -> torch.Tensor:
        """(B,) bool: every floor cell can reach every other without crossing walls or water."""
        return connected(cells == FLOOR)

    def reset_done(
        self, state: NurseryState, obs: torch.Tensor, done: torch.Tensor
    ) -> tuple[NurseryState, torch.Tensor]:
        """Auto-reset the worlds flagged in done (B,) with their next keys; others unchanged. Only the
        finished worlds are regenerated and observed again (obs (B, A, obs_dim) is patched, not rebuilt)."""
        worlds = torch.nonzero(done).flatten()
        fresh, fresh_obs = self.reset(rng.next_key(state.key[worlds]))
        obs = obs.clone()
        obs[worlds] = fresh_obs
        return state.put(worlds, fresh), obs

    # ------------------------------------------------------------------ step
    def step(
        self, state: NurseryState, actions: torch.Tensor, baby_actions: torch.Tensor | None = None
    ) -> tuple[NurseryState, StepOutput]:
        """Advance every world one step. actions (B, A) int64 in [0, N_ACTIONS); baby_actions (B, A) in
        [0, N_MOVES) overrides the scripted baby brain (None = scripted)."""
        cfg = self.config
        s = dataclasses.replace(state)  # shallow copy; fields are replaced, never mutated
        s.t = state.t + 1
        alive0 = s.mother_alive
        act = torch.where(alive0, actions.to(self.device).long().T, STAY)  # (A, B)
        draws = self._draws(s)
        ev: dict[str, torch.Tensor] = {}

        # Mothers move; walls block, hazards kill.
        target = move(s.mother_pos, act)  # non-move actions stay put
        terrain = self._at(s.cells, target)
        s.mother_pos = torch.where(terrain == WALL, s.mother_pos, target)
        mother_hazard = alive0 & is_hazard(terrain)
        ev["mother_hazard"] = mother_hazard

        # Eat, carry/put down, feed: contested resources go to the lower slot first.
        s, ev["ate"] = self._eat(s, act == EAT)
        s, ev["picked_up"], ev["dropped"] = self._carry(s, act == CARRY)
        s, ev["fed"], ev["fed_own"] = self._feed(s, act == FEED)

        # SHOO: predators near a shooing mother go back to rest in their den.
        near = chebyshev(s.mother_pos[:, :, None], s.predator_pos[:, None]) <= cfg.shoo_radius  # (A, P, B)
        in_reach = near & (s.predator_rest == 0)[None] & alive0[:, None]
        ev["could_guard"] = any_(in_reach, 1)  # a SHOO now would have scared a predator
        scared = in_reach & (act == SHOO)[:, None]
        ev["guarded"] = any_(scared, 1)
        hit = any_(scared, 0)  # (P, B)
        s.predator_pos = torch.where(hit, s.predator_den, s.predator_pos)
        s.predator_rest = torch.where(hit, cfg.predator_stun, s.predator_rest)

        # Carried babies ride along; the rest follow their brains.
        s = self._follow_carrier(s)
        s, baby_hazard = self._move_babies(s, draws, baby_actions)
        s = self._grown_babies_eat(s)
        s, bites = self._move_predators(s, draws)

        # Hunger, harm and death.
        alive = s.baby_alive
        hunger = torch.where(alive, (s.hunger + 1).clamp(max=cfg.hunger_max), s.hunger)
        starving = alive & (hunger >= cfg.hunger_max)
        health = s.health - bites * cfg.predator_bite - starving.long()
        died = alive & ((health <= 0) | baby_hazard)
        ev["baby_harm_predator"], ev["baby_harm_hazard"], ev["baby_harm_hunger"] = (
            bites,
            baby_hazard,
            starving,
        )
        ev["baby_died"] = died
        s.hunger, s.health = hunger, health.clamp(min=0)
        s.baby_alive = alive & ~died
        s.age = s.age + s.baby_alive.long()
        if not cfg.birth_interval:
            s.next_birth = torch.where(died, s.t + cfg.rebirth_delay, s.next_birth)

        # Mothers spend energy; starved or drowned mothers die and drop what they carry.
        energy = s.energy - alive0.long() * (1 + cfg.carry_cost * self._carrying(s).long())
        s.energy = energy.clamp(min=0)
        mother_died = alive0 & ((energy <= 0) | mother_hazard)
        s.mother_alive = alive0 & ~mother_died
        ev["mother_died"] = mother_died
        carrier_alive = torch.gather(s.mother_alive, 0, s.carried_by.clamp(min=0))
        s.carried_by = torch.where((s.carried_by >= 0) & carrier_alive & s.baby_alive, s.carried_by, -1)

        s, joined_next = self._grow_up(s)
        s, ev["baby_born"], left = self._births(s, draws["birth"])
        ev["grew_up"] = joined_next | left
        s.food_timer = s.food_timer - (s.food_timer > 0).to(s.food_timer.dtype)

        ev["carrying"] = self._carrying(s)
        ev["baby_alive"] = s.baby_alive
        ev["baby_distance"] = torch.where(s.baby_alive, chebyshev(s.mother_pos, s.baby_pos), -1)
        ev["baby_hunger"] = torch.where(s.baby_alive, s.hunger, 0)

        w = cfg.baby_reward_weight
        child_alive = s.baby_alive
        if cfg.generations > 1:  # a child who grew up still counts while she lives, as a mother
            child_alive = child_alive | (self.has_child_slot & s.mother_alive.roll(-self.founders, 0))
        reward = torch.where(s.has_given_birth, w * child_alive.float() + (1.0 - w), 1.0)
        reward = reward * (s.mother_alive & alive0).float()  # a mother joining now was not here to earn it
        events = torch.stack([ev[k].long() for k in EVENTS], -1).transpose(0, 1).contiguous()  # (B, A, n)
        if cfg.orphans:  # events are a mother's and her baby's: an orphan's slot has none
            events = events * ~self.orphan.T[..., None]
        out = StepOutput(
            obs=self.observe(s),
            reward=reward.T.contiguous(),
            terminated=mother_died.T.contiguous(),
            truncated=s.t >= cfg.max_cycles,
            events={k: events[..., i] for i, k in enumerate(EVENTS)},
        )
        return s, out

    # ------------------------------------------------------------------ rules
    def _draws(self, s: NurseryState) -> dict[str, torch.Tensor]:
        """Every random number a step needs, from one hash call (see worlds.rng); each (n, B)."""
        A, P = self.A, self.P
        u = rng.uniform(s.key, s.t, _S_STEP, 3 * A + 2 * P)
        curious, baby_dir, pred_move, pred_dir, birth = u.split([A, A, P, P, A])
        return {
            "curious": curious,
            "baby_dir": (baby_dir * N_MOVES).long(),
            "pred_move": pred_move,
            "pred_dir": (pred_dir * N_MOVES).long(),
            "birth": (birth * 4).long(),
        }

    def _take_food(self, food: torch.Tensor, pos: torch.Tensor, wants: torch.Tensor) -> torch.Tensor:
        """Eaters at pos (2, E, B) that want to (E, B) take the ready food patch they stand on, in slot
        order (a contested patch goes to the lower slot); taken patches start regrowing. `food` is a
        private (H*W, B) copy, written in place. -> ate (E, B)."""
        cells = self._flat(pos)
        ate = []
        for i in range(cells.shape[0]):
            current = food.gather(0, cells[i : i + 1])  # (1, B)
            ok = wants[i : i + 1] & (current == 0)
            food.scatter_(
                0, cells[i : i + 1], torch.where(ok, self.config.food_regrow, current).to(food.dtype)
            )
            ate.append(ok)
        return torch.cat(ate)

    def _eat(self, s: NurseryState, wants: torch.Tensor) -> tuple[NurseryState, torch.Tensor]:
        cfg = self.config
        food = s.food_timer.reshape(self.H * self.W, -1).clone()  # the input state stays untouched
        ate = self._take_food(food, s.mother_pos, wants & s.mother_alive)
        s.food_timer = food.view_as(s.food_timer)
        s.energy = torch.where(ate, (s.energy + cfg.food_energy).clamp(max=cfg.energy_max), s.energy)
        return s, ate

    def _reachable_babies(self, s: NurseryState) -> torch.Tensor:
        """(A mothers, A babies, B) bool: living baby within her reach (one step, or her own cell with
        care_reach="cell"; a baby she carries is on her cell)."""
        close = chebyshev(s.mother_pos[:, :, None], s.baby_pos[:, None]) <= self.reach
        return close & s.baby_alive[None] & s.mother_alive[:, None]

    def _choose_baby(self, eligible: torch.Tensor, mother: int, carried_by: torch.Tensor) -> torch.Tensor:
        """eligible (A babies, B) for one mother -> (B,) slot: her own first (with care_reach="cell" the
        one she carries first: the world does not tell hers apart), else the lowest; -1 if none."""
        if self.reach:
            rank = torch.where(self.slots == mother, 0, 1 + self.slots)[:, None]
        else:
            rank = torch.where(carried_by == mother, 0, 1 + self.slots[:, None])
        _, best = argmin_(torch.where(eligible, rank, 10**6), 0)
        return torch.where(any_(eligible, 0), best, -1)

    def _carry(self, s: NurseryState, wants: torch.Tensor) -> tuple[NurseryState, torch.Tensor, torch.Tensor]:
        wants = wants & s.mother_alive
        holding = s.carried_by[None] == self.slots[:, None, None]  # (mothers, babies, B)
        drop = wants & any_(holding, 1)
        carried_by = torch.where(any_(holding & drop[:, None], 0), -1, s.carried_by)
        reachable = self._reachable_babies(s)
        picked = []
        for i in range(self.A):
            eligible = reachable[i] & (carried_by < 0) & (wants[i] & ~drop[i])
            choice = self._choose_baby(eligible, i, carried_by)
            carried_by = torch.where(self.slots[:, None] == choice, i, carried_by)
            picked.append(choice >= 0)
        s.carried_by = carried_by
        return s, torch.stack(picked), drop

    def _feed(self, s: NurseryState, wants: torch.Tensor) -> tuple[NurseryState, torch.Tensor, torch.Tensor]:
        cfg = self.config
        wants = wants & s.mother_alive & (s.energy >= cfg.feed_cost)
        hunger, energy = s.hunger, s.energy
        reachable = self._reachable_babies(s)
        fed, fed_own = [], []
        for i in range(self.A):
            choice = self._choose_baby(reachable[i] & (hunger > 0) & wants[i], i, s.carried_by)
            hunger = torch.where(
                self.slots[:, None] == choice, (hunger - cfg.feed_amount).clamp(min=0), hunger
            )
            ok = choice >= 0
            energy = torch.where((self.slots[:, None] == i) & ok, energy - cfg.feed_cost, energy)
            fed.append(ok)
            fed_own.append(choice == i)
        s.hunger, s.energy = hunger, energy
        return s, torch.stack(fed), torch.stack(fed_own)

    def _follow_carrier(self, s: NurseryState) -> NurseryState:
        carrier = s.carried_by.clamp(min=0)[None].expand(2, -1, -1)
        s.baby_pos = torch.where(s.carried_by >= 0, torch.gather(s.mother_pos, 1, carrier), s.baby_pos)
        return s

    def scripted_baby_actions(
        self, s: NurseryState, draws: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(A, B) moves of the default baby brain: young babies crawl, often towards a hazard they can
        see; grown babies wander but never step into a hazard."""
        cfg = self.config
        draws = self._draws(s) if draws is None else draws
        rand_dir = draws["baby_dir"]
        if self.K == 0:
            return rand_dir
        d = chebyshev(s.baby_pos[:, :, None], s.hazard_pos[:, None])  # (A, K, B)
        dist, nearest = argmin_(d, 1)
        goal = torch.gather(s.hazard_pos, 1, nearest[None].expand(2, -1, -1))
        curious = (draws["curious"] < cfg.curiosity) & (dist <= cfg.baby_sight)
        young_dir = torch.where(curious, self._toward(s.baby_pos, goal), rand_dir)
        grown_dir = torch.where(is_hazard(self._at(s.cells, move(s.baby_pos, rand_dir))), STAY, rand_dir)
        return torch.where(s.age < cfg.grow_age, young_dir, grown_dir)

    def _move_babies(
        self, s: NurseryState, draws: dict[str, torch.Tensor], baby_actions: torch.Tensor | None
    ) -> tuple[NurseryState, torch.Tensor]:
        cfg = self.config
        moves = (
            self.scripted_baby_actions(s, draws)
            if baby_actions is None
            else baby_actions.to(self.device).long().T
        )
        grown = s.age >= cfg.grow_age
        may_move = s.baby_alive & (s.carried_by < 0) & (grown | (s.age % cfg.baby_move_period == 0))
        target = move(s.baby_pos, torch.where(may_move, moves, STAY))
        terrain = self._at(s.cells, target)
        s.baby_pos = torch.where(terrain == WALL, s.baby_pos, target)
        return s, s.baby_alive & is_hazard(terrain)

    def _grown_babies_eat(self, s: NurseryState) -> NurseryState:
        """Grown, hungry babies eat the food they stand on (after the mothers: they have priority)."""
        cfg = self.config
        food = s.food_timer.view(self.H * self.W, -1)  # already a private copy made by _eat this step
        hungry = s.baby_alive & (s.age >= cfg.grow_age) & (s.hunger >= cfg.cry_threshold)
        s.hunger = torch.where(self._take_food(food, s.baby_pos, hungry), 0, s.hunger)
        return s

    def _move_predators(
        self, s: NurseryState, draws: dict[str, torch.Tensor]
    ) -> tuple[NurseryState, torch.Tensor]:
        """Predators stalk the nearest living baby; a bite sends them back to rest. -> bites (A, B)."""
        cfg = self.config
        if self.P == 0:
            return s, torch.zeros_like(s.hunger)
        rest = s.predator_rest
        active = rest == 0
        gap = (s.predator_pos[:, :, None] - s.baby_pos[:, None]).abs()
        _, nearest = argmin_(torch.where(s.baby_alive[None], gap[0] + gap[1], 10**6), 1)  # (P, B)
        goal = torch.gather(s.baby_pos, 1, nearest[None].expand(2, -1, -1))
        direction = torch.where(any_(s.baby_alive, 0), self._toward(s.predator_pos, goal), draws["pred_dir"])
        moving = active & (draws["pred_move"] < cfg.predator_speed)
        target = move(s.predator_pos, torch.where(moving, direction, STAY))
        pos = torch.where(self._at(s.cells, target) != FLOOR, s.predator_pos, target)
        same = (pos[0, :, None] == s.baby_pos[0, None]) & (
            pos[1, :, None] == s.baby_pos[1, None]
        )  # (P, A, B)
        on_baby = same & s.baby_alive[None] & active[:, None]
        bit = any_(on_baby, 1)
        s.predator_pos = torch.where(bit, s.predator_den, pos)
        s.predator_rest = torch.where(bit, cfg.predator_stun, (rest - 1).clamp(min=0))
        return s, fold(torch.add, on_baby.long(), 0)

    def _births(
        self, s: NurseryState, birth_draws: torch.Tensor
    ) -> tuple[NurseryState, torch.Tensor, torch.Tensor]:
        """Mothers due to give birth get a baby on a random free neighbouring cell (or their own), or
        with birth_place="anywhere" on a random floor cell of the grid. birth_draws (A, B) in [0, 4):
        the neighbour each mother tries first. With scheduled births (birth_interval > 0) a birth is due
        on schedule even while her last baby lives: that baby grows up and leaves. -> (state, born (A, B),
        left (A, B): babies who grew up and left to make room)."""
        cfg = self.config
        due = (s.mother_alive | self.orphan) & (s.births_left > 0) & (s.t >= s.next_birth)
        if cfg.birth_interval:
            left = due & s.baby_alive
            s.next_birth = torch.where(due, s.t + cfg.birth_interval, s.next_birth)
        else:
            due, left = due & ~s.baby_alive, torch.zeros_like(due)
        if cfg.birth_place == "anywhere":
            spot = self._random_floor_cells(s)
        else:
            # Try the four neighbours in turn from a random one; fall back to the mother's own cell.
            spot = s.mother_pos
            for k in reversed(range(4)):
                cand = move(s.mother_pos, 1 + (birth_draws + k) % 4)
                spot = torch.where(self._at(s.cells, cand) == FLOOR, cand, spot)
        s.baby_pos = torch.where(due, spot, s.baby_pos)
        s.baby_alive = s.baby_alive | due
        s.hunger = torch.where(due, 0, s.hunger)
        s.health = torch.where(due, cfg.baby_health, s.health)
        s.age = torch.where(due, 0, s.age)
        s.carried_by = torch.where(due, -1, s.carried_by)
        s.births_left = s.births_left - due.long()
        s.has_given_birth = s.has_given_birth | due
        return s, due, left

    def next_scheduled_birth(self, t: int) -> int:
        """With scheduled births: the first birth due after step t (birth_step, then every interval)."""
        cfg = self.config
        if t < cfg.birth_step:
            return cfg.birth_step
        return cfg.birth_step + cfg.birth_interval * ((t - cfg.birth_step) // cfg.birth_interval + 1)

    def another_baby_possible(self, s: NurseryState) -> torch.Tensor:
        """(A, B) bool: were her baby to die now, another would be born before the episode ends (after
        rebirth_delay, or at the next scheduled birth)."""
        cfg = self.config
        if cfg.birth_interval:
            return (s.births_left > 0) & (s.next_birth < cfg.max_cycles)
        return (s.births_left > 0) & (s.t + cfg.rebirth_delay < cfg.max_cycles)[None]

    def _grow_up(self, s: NurseryState) -> tuple[NurseryState, torch.Tensor]:
        """Grown babies whose next-generation slot is still free leave their baby slot and join as that
        slot's mother, where they stand, with energy_start; each slot joins once. Their mothers may give
        birth again after rebirth_delay (if births are left). -> (state, grew_up (A, B) parent slots)."""
        cfg, n = self.config, self.founders
        if cfg.generations == 1:
            return s, torch.zeros_like(s.baby_alive)
        free = self.has_child_slot & ~s.joined.roll(-n, 0)  # (A, B): parent slot's child slot is free
        grew = s.baby_alive & (s.age >= cfg.grow_age) & free
        joins = grew.roll(n, 0)  # the same, indexed by the child's slot (founders never join)
        s.mother_pos = torch.where(joins, s.baby_pos.roll(n, 1), s.mother_pos)
        s.mother_alive, s.joined = s.mother_alive | joins, s.joined | joins
        s.energy = torch.where(joins, cfg.energy_start, s.energy)
        s.next_birth = torch.where(joins, s.t + cfg.birth_step, s.next_birth)
        s.next_birth = torch.where(grew, s.t + cfg.rebirth_delay, s.next_birth)
        s.baby_alive = s.baby_alive & ~grew
        s.carried_by = torch.where(grew, -1, s.carried_by)
        return s, grew

    def _random_floor_cells(self, s: NurseryState) -> torch.Tensor:
        """(2, A, B): one uniformly random floor cell per mother slot, the k-th floor cell for a uniform
        k: one number per mother, not one per cell, since this runs at every step (its own random stream,
        so the default "beside" worlds draw exactly what they always drew)."""
        floor = s.cells[self.interior[0], self.interior[1]] == FLOOR  # (L, B)
        ends = floor.long().cumsum(0).T.contiguous()  # (B, L): floor cells up to and including each
        u = rng.uniform(s.key, s.t, _S_BIRTH_PLACE, self.A)  # (A, B)
        k = (u.T * ends[:, -1:]).long().contiguous()  # (B, A) in [0, floor cells): none has none
        pick = torch.searchsorted(ends, k, right=True).T  # (A, B): the first cell with ends > k
        return self.interior[:, pick]

    # ------------------------------------------------------------------ helpers
    def _flat(self, pos: torch.Tensor) -> torch.Tensor:
        """(2, E, B) positions -> (E, B) flat cell indices, clamped onto the grid."""
        return (pos[0] * self.W + pos[1]).clamp(0, self.H * self.W - 1)

    def _at(self, grid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """grid (H, W, B) read at pos (2, E, B) -> (E, B)."""
        return grid.reshape(self.H * self.W, -1).gather(0, self._flat(pos))

    def _paint(self, grid: torch.Tensor, pos: torch.Tensor, value: int) -> torch.Tensor:
        idx = pos[0] * self.W + pos[1]
        flat = grid.reshape(self.H * self.W, -1)
        return flat.scatter(0, idx, torch.full_like(idx, value, dtype=grid.dtype)).view_as(grid)

    def _toward(self, pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Greedy move (STAY..LEFT) that closes the larger of the two gaps to goal; (2, E, B) -> (E, B)."""
        dy, dx = goal - pos
        move = torch.where(
            dy.abs() >= dx.abs(), torch.where(dy < 0, UP, DOWN), torch.where(dx > 0, RIGHT, LEFT)
        )
        return torch.where((dy == 0) & (dx == 0), STAY, move)

    def _carrying(self, s: NurseryState) -> torch.Tensor:
        """(A, B) bool: mother i is carrying some baby."""
        return any_(s.carried_by[None] == self.slots[:, None, None], 1)

    # ------------------------------------------------------------------ observations
    def observe(self, s: NurseryState) -> torch.Tensor:
        """(B, A, obs_dim) uint8: each mother's egocentric view (V, V, C), then `scalar_names`."""
        cfg = self.config
        crying = self.crying(s)  # (A, B)
        # Hearing: direction to the nearest crying baby, however far.
        rel, dist = self.cry_distances(s, crying)  # (2, mothers, babies, B), (mothers, babies, B)
        _, nearest = argmin_(dist, 1)  # (A, B)
        heard = any_(crying, 0).expand(self.A, -1)
        toward_cry = torch.gather(rel, 2, nearest[None, :, None].expand(2, -1, 1, -1))[:, :, 0]  # (2, A, B)
        cry_dir = torch.where(heard, 128 + toward_cry * 127 // max(self.H, self.W), 128)
        cry_marker = []
        if cfg.hearing != "nearest":  # (3, A, B) the heard baby's marker, 0 when nothing is heard
            cry_marker = [torch.gather(m, 0, nearest) * heard for m in s.baby_marker.long()]
        if cfg.hearing == "several":
            cry_marker += self._further_cries(s, rel, self.cry_rank(dist), crying)
        scalars = torch.stack([
            s.energy * ON // cfg.energy_max,
            s.has_given_birth.long() * ON,
            self._carrying(s).long() * ON,
            *s.kin_marker.long(),
            heard.long() * ON,
            *cry_dir,
            (s.t * ON // cfg.max_cycles).clamp(max=ON).expand(self.A, -1),
            *cry_marker,
        ])  # fmt: skip
        return self.render_obs(s, s.mother_pos, s.mother_alive, scalars, exclude_self_mother=True)

    def marker_inputs(self) -> tuple[list[int], list[list[int]]]:
        """Where an observation holds kin markers: (her own kin marker's three indices, the three indices
        of each marker she can see or hear: every view cell's baby marker, then each heard cry's), so a
        network can compare each with hers using one set of weights."""
        C, cells = len(VIEW_CHANNELS), self.V * self.V
        colour = [self.channel[f"baby_marker_{c}"] for c in "rgb"]
        seen = [[cell * C + ch for ch in colour] for cell in range(cells)]
        names = self.scalar_names
        heard = ["cry_marker_"] + [f"cry{k}_marker_" for k in range(2, self.config.cries_heard + 1)]
        for prefix in heard:
            if prefix + "r" in names:
                seen.append([self.view_dim + names.index(prefix + c) for c in "rgb"])
        kin = [self.view_dim + names.index(f"kin_marker_{c}") for c in "rgb"]
        return kin, seen

    def crying(self, s: NurseryState) -> torch.Tensor:
        """(A, B) bool: a living baby cries while hungry, and a newborn for its first `newborn_cry` steps."""
        cfg = self.config
        return s.baby_alive & ((s.hunger >= cfg.cry_threshold) | (s.age < cfg.newborn_cry))

    def cry_rank(self, dist: torch.Tensor) -> torch.Tensor:
        """(mothers, babies, B) int64: the order in which each mother hears each baby's cry, 0 = the
        nearest (ties to the lower slot, as `argmin_` breaks them), from `dist` (mothers, babies, B), the
        Chebyshev distances with 10**6 where a baby is silent (silent babies rank after every cry)."""
        closer = dist[:, :, None] < dist[:, None, :]  # (mothers, i, j, B): baby i is heard before j
        slot = self.slots
        tie = (dist[:, :, None] == dist[:, None, :]) & (slot[:, None] < slot[None, :])[None, :, :, None]
        return (closer | tie).sum(1)

    def cry_distances(self, s: NurseryState, crying: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """crying (babies, B) (`crying`) -> (rel (2, mothers, babies, B): each baby's place relative to
        each mother, dist (mothers, babies, B): its Chebyshev distance where it cries, 10**6 where not)."""
        rel = s.baby_pos[:, None] - s.mother_pos[:, :, None]
        dist = torch.where(crying[None], torch.maximum(rel[0].abs(), rel[1].abs()), 10**6)
        return rel, dist

    def _further_cries(
        self, s: NurseryState, rel: torch.Tensor, rank: torch.Tensor, crying: torch.Tensor
    ) -> list[torch.Tensor]:
        """hearing="several": the 2nd..cries_heard-th cries she hears (`cry_rank`; silent where fewer
        babies cry), six (A, B) scalars each (FURTHER_CRY). rel (2, mothers, babies, B), crying (babies,
        B)."""
        scale = max(self.H, self.W)
        parts = []
        for k in range(1, self.config.cries_heard):
            pick = rank == k  # (mothers, babies, B) one baby each
            heard = any_(pick & crying[None], 1)  # (mothers, B)
            toward = (rel * pick).sum(2)  # (2, mothers, B)
            parts += [heard.long() * ON, *torch.where(heard, 128 + toward * 127 // scale, 128)]
            parts += [(m[None] * pick).sum(1) * heard for m in s.baby_marker.long()]
        return parts

    def observe_babies(self, s: NurseryState) -> torch.Tensor:
        """(B, A, obs_dim) uint8 observations from each baby's place, in the mothers' format (the baby's
        satiety in the energy slot, its own marker as kin marker) so a mother's network can drive a baby."""
        cfg = self.config
        zeros = torch.zeros_like(s.hunger)
        scalars = torch.stack([
            (cfg.hunger_max - s.hunger) * ON // cfg.hunger_max, zeros, (s.carried_by >= 0).long() * ON,
            *s.baby_marker.long(), zeros, zeros + 128, zeros + 128,
            (s.t * ON // cfg.max_cycles).clamp(max=ON).expand(self.A, -1),
        ])  # fmt: skip
        return self.render_obs(s, s.baby_pos, s.baby_alive, scalars, exclude_self_mother=False)

    def observe_switched(self, s: NurseryState) -> torch.Tensor:
        """(B, A, obs_dim) uint8: mother i's own observation of the world in which she and her baby i
        trade names (seed 002's perspective taking). The pair exchanges places, who is alive, and her
        energy with its hunger (in each other's units), so the view is re-centred on the baby, she shows
        where her baby would (baby channel, their kin marker, crying when her energy is low) and the baby
        is the unseen self at the centre. Who carries whom is left as it is (a carried pair shares one
        cell), and so are all other entities."""
        cfg = self.config
        views = []
        for i in range(self.A):
            pair = dataclasses.replace(
                s,
                mother_pos=s.mother_pos.clone(),
                baby_pos=s.baby_pos.clone(),
                mother_alive=s.mother_alive.clone(),
                baby_alive=s.baby_alive.clone(),
                energy=s.energy.clone(),
                hunger=s.hunger.clone(),
                has_given_birth=s.has_given_birth.clone(),
            )
            pair.mother_pos[:, i], pair.baby_pos[:, i] = s.baby_pos[:, i], s.mother_pos[:, i]
            pair.mother_alive[i], pair.baby_alive[i] = s.baby_alive[i], s.mother_alive[i]
            pair.energy[i] = (cfg.hunger_max - s.hunger[i]) * cfg.energy_max // cfg.hunger_max
            pair.hunger[i] = (cfg.energy_max - s.energy[i]) * cfg.hunger_max // cfg.energy_max
            pair.has_given_birth[i] = True
            views.append(self.observe(pair)[:, i])
        return torch.stack(views, 1)

    def render_obs(
        self,
        s: NurseryState,
        viewer_pos: torch.Tensor,
        viewer_alive: torch.Tensor,
        scalars: torch.Tensor,
        exclude_self_mother: bool,
    ) -> torch.Tensor:
        """(B, E, obs_dim) uint8 for viewers at viewer_pos (2, E, B) with scalars (S, E, B).

        Layout: V*V view cells then `scalar_cells` cells holding the scalars, C channels each, so one
        table lookup writes the whole observation. Terrain and food come from one gather of cell codes;
        the few entities are scattered in with max-reduction (overlaps resolve deterministically)."""
        B, V, r = s.batch, self.V, self.config.view_radius
        C, VV = len(VIEW_CHANNELS), self.V * self.V
        E = viewer_pos.shape[1]
        codes = s.cells + 3 * (s.food_timer == 0).to(torch.uint8)
        codes = F.pad(codes, (0, 0, r, r, r, r), value=WALL).view(-1, B)  # (Hp*Wp, B)
        base = viewer_pos[0] * (self.W + 2 * r) + viewer_pos[1]  # (E, B): window's top-left, padded
        idx = (base[:, None] + self.window_offsets[None, :, None]).view(-1, B)  # (E*(VV+sc), B)
        window = codes.gather(0, idx).T.reshape(-1)  # (B*E*(VV+sc),) batch-first
        obs = self.code_table.index_select(0, window.int()).view(B * E, -1)

        crying = self.crying(s)
        ones = torch.full_like(s.baby_alive, ON, dtype=torch.uint8)
        others = s.mother_alive[None].expand(E, -1, -1)
        if exclude_self_mother:
            others = others & ~torch.eye(E, self.A, dtype=torch.bool, device=self.device)[..., None]
        ch = self.channel
        predator = torch.full_like(s.predator_rest, ON, dtype=torch.uint8)
        groups = [  # (positions (2, N, B), present (E or 1, N, B), [(channel, value (N, B) uint8)])
            (s.mother_pos, others, [(ch["mother"], ones)]),
            (s.predator_pos, None, [(ch["predator"], predator)]),
            (s.baby_pos, s.baby_alive[None], [
                (ch["baby"], ones),
                (ch["baby_marker_r"], s.baby_marker[0]),
                (ch["baby_marker_g"], s.baby_marker[1]),
                (ch["baby_marker_b"], s.baby_marker[2]),
                (ch["baby_crying"], crying.to(torch.uint8) * ON),
            ]),
        ]  # fmt: skip
        index_parts, value_parts = [], []
        for pos, present, channels in groups:
            rel = pos[:, None] - viewer_pos[:, :, None] + r  # (2, E, N, B)
            inside = (rel[0] >= 0) & (rel[0] < V) & (rel[1] >= 0) & (rel[1] < V)
            if present is not None:
                inside = inside & present
            cell = (rel[0] * V + rel[1]).clamp(0, VV - 1) * C
            for channel, value in channels:
                index_parts.append(cell + channel)
                value_parts.append(value[None] * inside)
        index = torch.cat(index_parts, 1).permute(2, 0, 1).reshape(B * E, -1)
        values = torch.cat(value_parts, 1).permute(2, 0, 1).reshape(B * E, -1).to(torch.uint8)
        obs.scatter_reduce_(1, index, values, reduce="amax")
        obs = obs.view(B * E, VV + self.scalar_cells, C)
        tail = F.pad(scalars.permute(2, 1, 0), (0, self.scalar_cells * C - scalars.shape[0]))  # (B, E, sc*C)
        obs[:, VV:] = tail.reshape(B * E, -1, C)
        obs *= viewer_alive.T.reshape(-1, 1, 1)
        return obs.view(B, E, -1)
