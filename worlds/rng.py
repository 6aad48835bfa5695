"""Counter-based randomness: every random number is a hash of (world key, step, stream, index).

Why: a world's randomness then depends only on its own key, never on how many worlds share a batch,
so B=8 batched worlds and eight B=1 PettingZoo views give bit-identical trajectories, on any device.
All arithmetic stays in int64 below 2**63 (32-bit values times 31-bit constants), so it is exact on
CPU and CUDA alike.
"""

from __future__ import annotations

import operator

import torch

MASK32 = 0xFFFFFFFF
MAX_SEED = 2**62  # the largest user seed: what a world key's two 32-bit halves hold with room to spare
_MULT = 0x45D9F3B  # < 2**31, so (x < 2**32) * _MULT never overflows int64


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash of int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MULT) & MASK32
    x = x ^ (x >> 16)
    x = (x * _MULT) & MASK32
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    """mix32 on a Python int (no tensor, so no device sync and no graph break)."""
    x ^= x >> 16
    x = (x * _MULT) & MASK32
    x ^= x >> 16
    x = (x * _MULT) & MASK32
    return x ^ (x >> 16)


def hash_parts(*parts: torch.Tensor | int) -> torch.Tensor:
    """Hash several broadcastable int tensors (or ints) into one 32-bit value per element."""
    h: torch.Tensor | int = 0x9E3779B9
    for part in parts:
        h = mix32((h ^ (mix32(torch.as_tensor(part) & MASK32) + 0x7F4A7C15)) & MASK32)
    assert isinstance(h, torch.Tensor)
    return h


def uniform(key: torch.Tensor, t: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """(n, B) float32 uniforms in [0, 1) for worlds with keys `key` (B,) at steps `t` (B,).

    Batch-last, like the world state. One call draws every number a world needs at a step (about 20
    tensor ops whatever n is): the per-step op count, not the batch size, limits speed at small B."""
    stream_salt = _mix32_int((stream * 0x27D4EB2F + 0x165667B1) & MASK32)
    base = mix32(((key + t * 0x61C88647) & MASK32) ^ stream_salt)  # (B,)
    idx = (torch.arange(n, device=key.device) * 0x2545F491 + 0x3C6EF372) & MASK32
    h = mix32(base[None, :] ^ idx[:, None])
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def checked_seed(seed: object) -> int:
    """A user's seed as an int in [0, MAX_SEED], or a ValueError saying what a seed must be (a bool, a
    float, a negative or a 71-bit number would otherwise fail deep inside torch, or wrap silently)."""
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)  # ints and numpy integers
    except TypeError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise ValueError(f"seed must be an int in [0, {MAX_SEED}] or None, got {seed!r}")
    return value


def seed_key(seed: int | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The per-world key for a user seed (int or (B,) tensor of seeds)."""
    seeds = torch.as_tensor(seed, dtype=torch.int64, device=device)
    return hash_parts(seeds & MASK32, seeds >> 32, 0x5EED).reshape(-1)


def next_key(key: torch.Tensor) -> torch.Tensor:
    """The key of a world's next episode when it is reset without a new seed."""
    return hash_parts(key, 0xE9150DE)


def episode_keys(seed: int, episodes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(episodes,) keys of episodes 0..episodes-1 for a seed: episode i's world is the same whatever batch
    it is stepped in (training, evaluation and `worlds.make_vec` index their worlds by it)."""
    return hash_parts(seed_key(seed, device)[:, None], torch.arange(episodes, device=device)[None])[0]
