"""Every parameter of the nursery world, with its range and meaning (one source for CLI, files, docs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from worlds.config import ConfigError, param, validate_fields

MARKERS = 8  # kin markers in each palette (worlds.nursery.core): one per mother slot

# Named worlds: each preset's settings go under whatever else is set (`worlds.config.build_config`).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Self-care before the birth is necessary: a mother starves at step 15, before her baby comes at 20,
    # unless she eats (in the default world she starts with 40 and nothing before the birth asks it).
    "hungry": {"energy_start": 15},
    # Caring for the wrong baby costs her own (issue 18's world): babies are born anywhere among two
    # orphans nobody is paid for, she tends only the baby on her own cell, and she hears every cry (four
    # babies, four cries heard) with its baby's marker, a newborn's first cries too, so a mother who reads
    # only her senses can find hers as soon as the omniscient expert can. A scripted mother who tends
    # whichever baby is at hand (`expert-any`) saves far fewer of her own than one who tells hers by its
    # marker (`expert`): README, "Selective care". Before 2026-12-01 it was `hearing=marked
    # newborn_cry=0`: the nearest cry alone, none at birth; those settings still give that world.
    "selective": {
        "birth_place": "anywhere",
        "orphans": 2,
        "care_reach": "cell",
        "hearing": "several",
        "newborn_cry": 3,
        "n_hazards": 4,
        "curiosity": 0.3,
    },
}


@dataclass(frozen=True)
class NurseryConfig:
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    preset: str = param(
        "default",
        "a named world whose settings go under yours: "
        + "; ".join(
            f"{name}: " + (" ".join(f"{k}={v}" for k, v in settings.items()) or "these defaults")
            for name, settings in PRESETS.items()
        ),
        choices=tuple(PRESETS),
    )
    # Layout: a walled grid with random interior walls, deadly hazard tiles and food patches.
    height: int = param(12, "grid rows, border walls included", 7, 32)
    width: int = param(12, "grid columns, border walls included", 7, 32)
    n_walls: int = param(6, "interior wall tiles", 0, 200)
    n_hazards: int = param(8, "deadly hazard (water) tiles", 0, 200)
    pit_share: float = param(
        0.0,
        "chance each hazard tile is a pit instead of water: just as deadly, but a hazard no training "
        "world contains (for held-out tests; the trainer refuses it)",
        0.0,
        1.0,
    )
    n_food: int = param(8, "food patches", 1, 200)
    food_regrow: int = param(25, "steps for an eaten food patch to regrow", 1, 1000)
    view_radius: int = param(3, "egocentric view radius (view is 2r+1 square)", 1, 8)
    max_cycles: int = param(200, "episode length in steps", 1, 100000)

    # Mothers.
    n_mothers: int = param(2, "mothers per world (per generation), each with her own baby slot", 1, 8)
    orphans: int = param(
        0,
        "babies with no mother in the world, born with the others (birth_step, birth_place): they cry, "
        "crawl and are hunted like any baby, and nobody is paid for them, so a mother who cares for them "
        "spends on babies that are not hers. They are not agents and count in no survival metric",
        0,
        7,
    )
    energy_max: int = param(60, "mother's maximum energy", 5, 255)
    energy_start: int = param(40, "mother's energy at reset", 1, 255)
    food_energy: int = param(25, "energy a mother gains by eating a food patch", 1, 255)
    carry_cost: int = param(0, "extra energy per step spent carrying a baby", 0, 10)
    feed_cost: int = param(5, "energy a mother spends to feed a baby", 0, 100)
    shoo_radius: int = param(2, "SHOO scares predators within this Chebyshev distance", 1, 8)
    care_reach: str = param(
        "adjacent",
        "which baby FEED and CARRY reach: adjacent = any within one step, her own first (the world tells "
        "hers apart for her); cell = only a baby on her own cell, the one she carries first (she chooses "
        "whom she tends by where she stands: the world does not know which is hers)",
        choices=("adjacent", "cell"),
    )
    hearing: str = param(
        "nearest",
        "what a mother hears: nearest = the direction of the nearest crying baby; marked = that and the "
        "crying baby's marker (three more scalars), so she can tell whether the cry is her baby's; several = "
        "the nearest cries_heard crying babies, nearest first, each with its direction and marker, so "
        "she hears her own baby's cry among the others'",
        choices=("nearest", "marked", "several"),
    )
    cries_heard: int = param(
        4,
        "with hearing=several, how many cries a mother hears (the nearest first; six scalars each after "
        "the nearest): a number of its own, so the observation does not change with the babies' count",
        2,
        8,
    )

    # Life cycle.
    birth_step: int = param(
        20, "step at which each living mother gives birth (none if >= max_cycles)", 0, 100000
    )
    birth_place: str = param(
        "beside",
        "where a baby is born: beside its mother, or on a random floor cell anywhere (she must find "
        "it, and tell it from the other mothers' babies by its marker)",
        choices=("beside", "anywhere"),
    )
    births_per_life: int = param(
        1, "births per mother per episode (the next after a death, or on a schedule: birth_interval)", 0, 100
    )
    rebirth_delay: int = param(
        10, "steps after a baby's death before the next birth (unused with birth_interval > 0)", 1, 100000
    )
    birth_interval: int = param(
        0,
        "0 = the next birth comes rebirth_delay steps after a baby dies (a death buys the next baby); "
        "k > 0 = births come every k steps from birth_step whatever became of the last baby (one still "
        "alive then grows up and leaves, counted as surviving): a death buys nothing (spec 001's off "
        "switch, the control)",
        0,
        100000,
    )
    generations: int = param(
        1,
        "generations in an episode (spec 001's chain): a baby that grows up (grow_age) while a later "
        "generation's slot is free becomes a mother there, gives birth birth_step steps later, and her "
        "mother is rewarded while she lives; 1 = no chain (grown babies stay babies)",
        1,
        4,
    )
    baby_reward_weight: float = param(
        1.0, "after birth, reward = w*baby_alive + (1-w)*mother_alive (1 = purely the baby)", 0.0, 1.0
    )

    # Babies: weak, hungry, curious, and they grow.
    hunger_max: int = param(30, "a baby starves (loses health each step) at this hunger", 2, 10000)
    cry_threshold: int = param(15, "a baby cries when its hunger reaches this", 1, 10000)
    newborn_cry: int = param(
        0,
        "a newborn cries for its first this many steps whatever its hunger (0 = only a hungry baby "
        "cries): with births anywhere, its first cries are how its mother learns where it was born",
        0,
        10000,
    )
    feed_amount: int = param(30, "hunger removed by one feed", 1, 10000)
    baby_health: int = param(3, "baby health points; 0 = dead", 1, 100)
    baby_move_period: int = param(2, "a young baby moves once every this many steps", 1, 100)
    curiosity: float = param(0.6, "chance a moving young baby heads for a hazard it can see", 0.0, 1.0)
    baby_sight: int = param(3, "how far (Chebyshev) a baby sees hazards", 1, 32)
    grow_age: int = param(
        100, "age at which a baby grows: moves every step, feeds itself, avoids hazards", 1, 100000
    )
    baby_markers: str = param(
        "kin",
        "what marks each mother's baby: her own kin marker, a never-seen marker "
        "(foster), or the other mother's marker (swapped); both: her own kin marker, and orphan i wears "
        "the never-seen marker mother i's foster would (does a retargeted mother's care move or spread?)",
        choices=("kin", "novel", "swapped", "both"),
    )

    # Predators hunt babies; a mother's SHOO sends them back to their den.
    n_predators: int = param(1, "predators per world", 0, 16)
    predator_speed: float = param(0.5, "chance a predator moves on a given step", 0.0, 1.0)
    predator_bite: int = param(2, "health a baby loses per bite", 1, 100)
    predator_stun: int = param(12, "steps a predator rests in its den after a bite or a SHOO", 0, 1000)

    def validate(self) -> None:
        validate_fields(self)
        interior = (self.height - 2) * (self.width - 2)
        slots = self.n_mothers * self.generations + self.orphans
        needed = self.n_walls + self.n_hazards + self.n_food + slots + self.n_predators
        if needed > interior:
            raise ConfigError(
                f"grid {self.height}x{self.width} has {interior} interior cells but the "
                f"layout needs {needed} (walls+hazards+food+mothers of every generation+orphans+predators)"
            )
        if slots > MARKERS:
            raise ConfigError(
                f"n_mothers x generations + orphans = {slots} baby slots, but there are only {MARKERS} "
                "kin markers"
            )
        if self.energy_start > self.energy_max:
            raise ConfigError(f"energy_start={self.energy_start} exceeds energy_max={self.energy_max}")
        if self.cry_threshold > self.hunger_max:
            raise ConfigError(f"cry_threshold={self.cry_threshold} exceeds hunger_max={self.hunger_max}")
        if self.orphans and self.generations > 1:
            raise ConfigError("orphans > 0 needs generations = 1")
        if self.birth_interval and self.generations > 1:
            raise ConfigError("birth_interval > 0 (scheduled births) needs generations = 1")
        if self.baby_markers == "swapped" and self.n_mothers < 2:
            raise ConfigError("baby_markers=swapped needs n_mothers >= 2")
        if self.baby_markers == "both" and self.orphans < 1:
            raise ConfigError("baby_markers=both needs orphans >= 1 (an orphan wears the new marker)")
