"""An ahead-of-time compiled B=1 step of a world's core, for PettingZoo views built with `compile=True`.

Why: a one-world step is ~900 tiny tensor operations whose dispatch cost (a few µs each) is the whole
step. AOTInductor (torch.export + Inductor's C++ backend) fuses the core's own step, traced from its
code (no rule is restated), into a few C++ kernels called in one native call. What it costs: one to
three minutes of compiling per world config on a 2-core CPU, so the compiled step is cached on disk
(under `$CARING_CACHE_DIR`, default `~/.cache/caring/compiled`) keyed by everything it depends on: the
config, the device, torch's version, the CPU's vector ISA and the source of the world's modules. It
must give the eager step's results bit for bit: every load is checked against the eager core on a few
steps, and a mismatch or any failure to build or load falls back to the eager step with a warning.
(At large batches Inductor's code is slower than the eager core, ~2.7x at 2,048 worlds, so only the
one-world views use it.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import platform
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

StepFn = Callable[[Any, torch.Tensor], tuple[Any, Any]]

# Inductor settings for a latency-bound, single-world step: no OpenMP regions, intermediates on the
# stack and one planned pool instead of ~70 heap allocations per call.
INDUCTOR_CONFIGS = {
    "cpp.threads": 1,
    "aot_inductor.allow_stack_allocation": True,
    "memory_planning": True,
}
_CHECK_STEPS = 4  # eager vs compiled steps compared at every load
_OUTPUTS = ("obs", "reward", "terminated", "truncated")  # a step output's tensors besides its events


def cache_dir() -> Path:
    root = os.environ.get("CARING_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "caring"
    )
    return Path(root, "compiled")


class EventTable(Mapping[str, torch.Tensor]):
    """A step's events as the one stacked (B, A, n_events) tensor the compiled step returns, read by
    name like the eager core's dict: no tensor operation per event unless one is read by name."""

    def __init__(self, stacked: torch.Tensor, names: tuple[str, ...]):
        self.stacked = stacked
        self._index = {name: i for i, name in enumerate(names)}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.stacked[..., self._index[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class _Flat(torch.nn.Module):
    """core.step on flat tensors: (state fields..., actions) -> (state fields..., obs, reward,
    terminated, truncated, events...), the form torch.export and the compiled model take."""

    def __init__(self, core: Any, state_cls: type, events: tuple[str, ...]):
        super().__init__()
        self.core, self.state_cls, self.events = core, state_cls, events

    def forward(self, fields: tuple[torch.Tensor, ...], actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state, out = self.core.step(self.state_cls(*fields), actions)
        outputs = (getattr(out, name) for name in _OUTPUTS)
        return (*state.tensors(), *outputs, torch.stack([out.events[k] for k in self.events], -1))


def _key(core: Any) -> str:
    """Everything the compiled code depends on, hashed: a change to any of it builds a new step."""
    modules = {type(core).__module__, "worlds.rng", "worlds.grid", __name__}
    sources = {name: inspect.getsource(sys.modules[name]) for name in sorted(modules)}
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    fingerprint = {
        "core": type(core).__qualname__,
        "config": dataclasses.asdict(core.config),
        "device": str(core.device),
        "torch": torch.__version__,
        "python": sys.version_info[:2],
        "machine": platform.machine(),
        "isa": str(pick_vec_isa()),
        "inductor": INDUCTOR_CONFIGS,
        "sources": sources,
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _build(flat: _Flat, example: tuple, path: Path) -> None:
    program = torch.export.export(flat, example, strict=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")  # AOTInductor wants .pt2
    torch._inductor.aoti_compile_and_package(
        program, package_path=str(partial), inductor_configs=INDUCTOR_CONFIGS
    )
    os.replace(partial, path)  # atomic: a concurrent reader sees no half-written package


def compiled_step(core: Any, state: Any, n_actions: int) -> StepFn | None:
    """A drop-in for `core.step(state, actions)` (no baby_actions) on one world, compiled and cached;
    `state` is any B=1 state of this core (its shapes and dtypes are the compiled ones), `n_actions`
    the agents' action count (for the check against eager). None, with a warning, when it cannot be
    built or loaded, or differs from the eager step (a cached file that fails is removed, so the next
    call builds it again)."""
    state = state.world(0)  # contiguous: the compiled code assumes the example's strides
    state_cls, events = type(state), tuple(core.step(state, _zero_actions(core))[1].events)
    flat = _Flat(core, state_cls, events)
    example = (tuple(state.tensors()), _zero_actions(core))
    path = cache_dir() / f"{type(core).__name__}-{_key(core)}.pt2"
    try:
        if not path.exists():
            with torch.no_grad():
                _build(flat, example, path)
        call = torch._inductor.aoti_load_package(str(path), run_single_threaded=True).loader.run
    except Exception as error:  # any toolchain failure: the eager step is always right
        return _give_up(path, f"compiled step unavailable ({type(error).__name__}: {error})")
    n_fields = len(example[0])
    out_cls = type(core.step(state, example[1])[1])

    def step(s: Any, actions: torch.Tensor) -> tuple[Any, Any]:
        outputs = call([*(t.contiguous() for t in s.tensors()), actions])  # a no-op on its own outputs
        new_state = state_cls(*outputs[:n_fields])
        obs, reward, terminated, truncated = outputs[n_fields : n_fields + len(_OUTPUTS)]
        ev = EventTable(outputs[-1], events)
        out = out_cls(obs=obs, reward=reward, terminated=terminated, truncated=truncated, events=ev)
        return new_state, out

    if not _same_as_eager(core, step, state, n_actions):
        return _give_up(path, f"compiled step {path.name} differs from the eager core")
    return step


def _give_up(path: Path, why: str) -> None:
    path.unlink(missing_ok=True)
    warnings.warn(f"{why}; stepping eagerly", stacklevel=4)


def _zero_actions(core: Any) -> torch.Tensor:
    return torch.zeros(1, core.A, dtype=torch.int64, device=core.device)


def _same_as_eager(core: Any, step: StepFn, state: Any, n_actions: int) -> bool:
    """A few steps of random actions from `state`: every output tensor equal, bit for bit."""
    gen = torch.Generator().manual_seed(0)
    eager = compiled = state
    for _ in range(_CHECK_STEPS):
        actions = torch.randint(0, n_actions, (1, core.A), generator=gen).to(core.device)
        eager, out_e = core.step(eager, actions)
        compiled, out_c = step(compiled, actions)
        pairs = [*zip(eager.tensors(), compiled.tensors(), strict=True)]
        pairs += [(getattr(out_e, f), getattr(out_c, f)) for f in _OUTPUTS]
        pairs += [(out_e.events[k], out_c.events[k]) for k in out_e.events]
        if not all(a.dtype == b.dtype and torch.equal(a, b) for a, b in pairs):
            return False
    return True
