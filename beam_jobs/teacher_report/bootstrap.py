"""Intervals: the percentile bootstrap over examples, paired across teachers.

Every figure of the report's masked-LM part is a ratio of sums over examples (sum of numerators /
sum of denominators). `bootstrap_ratios` resamples the examples with replacement and computes
every ratio on the same resamples, so the difference of two teachers' figures gets its own
(paired) interval, much narrower than comparing two separate intervals; `interval` turns the
draws into {value, low, high}. Seeded (`stable_seed`), so a report is reproducible.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from strings/ints (Python's hash() is salted per process)."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def bootstrap_ratios(numerators: np.ndarray, denominators: np.ndarray, samples: int,
                     seed: int, chunk: int = 100) -> np.ndarray:
    """Bootstrap draws of ratio statistics sum(num) / sum(den) over resampled examples.

    Every statistic is computed on the same resamples, so differences of two statistics (paired
    comparisons) can be read from the draws.

    Args:
      numerators, denominators: [m, n] per-example sums of m statistics over n examples.
      samples: B, the number of resamples (each n examples drawn with replacement).
      seed: the generator's seed; the draws are a function of (inputs, samples, seed).

    Returns:
      [B, m] float64 draws (NaN where a resample's denominator is 0).
    """
    numerators = np.atleast_2d(np.asarray(numerators, np.float64))
    denominators = np.atleast_2d(np.asarray(denominators, np.float64))
    n = numerators.shape[1]
    if n == 0:
        return np.full((samples, numerators.shape[0]), np.nan)
    rng = np.random.default_rng(seed)
    uniform = np.full(n, 1.0 / n)
    draws = []
    for start in range(0, samples, chunk):
        counts = rng.multinomial(n, uniform, size=min(chunk, samples - start)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws.append((counts @ numerators.T) / (counts @ denominators.T))
    return np.concatenate(draws, axis=0)


def interval(point: float, draws: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """{value, low, high}: the point estimate and the percentile bootstrap interval."""
    draws = np.asarray(draws, np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0 or not np.isfinite(point):
        return {"value": float(point), "low": float("nan"), "high": float("nan")}
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return {"value": float(point), "low": float(low), "high": float(high)}


def exp_interval(ci: dict) -> dict:
    """exp of an interval (a perplexity from a loss): exp is increasing, so the bounds map."""
    return {k: float(math.exp(v)) if np.isfinite(v) else float("nan") for k, v in ci.items()}
