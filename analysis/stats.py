"""Aggregate statistics over seeds: mean and interquartile mean, each with a percentile-bootstrap 95% CI.

With 5–10 seeds a normal-approximation interval is too optimistic and the mean is at the mercy of one
bad seed; the interquartile mean (Agarwal et al., NeurIPS 2021) is robust to that and still efficient.
The bootstrap uses a fixed generator so that a summary is reproducible from its results.csv.
"""

from __future__ import annotations

import math

import numpy as np


def mean(values: np.ndarray) -> np.ndarray:
    """Mean along the last axis (the statistics here all reduce the last axis, so they batch)."""
    return values.mean(-1)


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: the mean of the middle half (⌊n/4⌋ cut at each end)."""
    ordered = np.sort(values, axis=-1)
    cut = ordered.shape[-1] // 4
    return ordered[..., cut : ordered.shape[-1] - cut].mean(-1)


def bootstrap_ci(
    values: list[float], statistic=mean, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap 95% CI of `statistic` (reducing the last axis) over `values` (NaN values
    are dropped)."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = data[rng.integers(0, data.size, size=(resamples, data.size))]  # (resamples, n)
    stats = statistic(draws)  # (resamples,)
    return (float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975)))


def summarize(values: list[float]) -> dict[str, float | list[float] | int]:
    """Mean and IQM over seeds, each with its bootstrap CI, and the number of values used."""
    data = [v for v in values if not math.isnan(v)]
    if not data:
        return {
            "n": 0,
            "mean": math.nan,
            "mean_ci95": [math.nan] * 2,
            "iqm": math.nan,
            "iqm_ci95": [math.nan] * 2,
        }
    return {
        "n": len(data),
        "mean": float(mean(np.asarray(data))),
        "mean_ci95": list(bootstrap_ci(data)),
        "iqm": float(iqm(np.asarray(data))),
        "iqm_ci95": list(bootstrap_ci(data, iqm)),
    }
