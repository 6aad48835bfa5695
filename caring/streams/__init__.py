"""Training methods as second-stream objects (`SecondStream`, in `caring.streams.base`), one file each,
registered here: adding a method is its file and one line below."""

from __future__ import annotations

from caring.streams.base import Context, SecondStream
from caring.streams.choice import Choice
from caring.streams.kickstart import Kickstart
from caring.streams.kindness import Kindness
from caring.streams.lagrangian import Lagrangian
from caring.streams.ppo import PPO
from caring.streams.rlhf import RLAIF, RLHF
from caring.streams.rlmf import RLMF
from caring.streams.tom import TheoryOfMind
from worlds.config import ConfigError

STREAMS: dict[str, type[SecondStream]] = {
    stream.name: stream
    for stream in (PPO, RLMF, Lagrangian, Choice, TheoryOfMind, RLHF, RLAIF, Kindness, Kickstart)
}


def get_stream(method: str) -> type[SecondStream]:
    """The stream class of a method name (one clear line for an unknown one)."""
    if method not in STREAMS:
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(STREAMS)}")
    return STREAMS[method]


__all__ = ["STREAMS", "Context", "SecondStream", "get_stream"]
