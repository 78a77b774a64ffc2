"""How results are read against a goal: efficiency printed without crossing a goal by rounding."""

from __future__ import annotations

import math


def format_efficiency(energy_ratio: float, *, digits: int = 3) -> str:
    """1 / energy_ratio as "N.NNNx", rounded to ``digits`` decimals, except that rounding never carries a value up to
    a tenth it does not reach (goals such as 3x and 4.4x are tenths): 0.33383 -> "2.996x", but 1 / 2.99996 ->
    "2.99996x", not "3.000x". Raises ValueError for a ratio that is not a positive finite number."""
    if not (isinstance(energy_ratio, (int, float)) and math.isfinite(energy_ratio) and energy_ratio > 0):
        raise ValueError(f"an energy ratio must be a positive finite number, got {energy_ratio!r}")
    x = 1.0 / energy_ratio
    for d in range(digits, 10):
        text = f"{x:.{d}f}"
        shown = float(text)
        crosses = shown > x and math.isclose(shown * 10, round(shown * 10), abs_tol=1e-9)
        if not crosses:
            return f"{text}x"
    return f"{math.floor(x * 10 ** 9) / 10 ** 9:.9f}x"
