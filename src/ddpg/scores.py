"""Episode scores: the trailing average and the solve criterion (the course's definitions)."""

from __future__ import annotations

import numpy as np


def trailing_average(scores: list[float], window: int) -> float:
    """Mean of the last `window` episode scores (of all there are, when fewer)."""
    return float(np.mean(scores[-window:]))


def solved_episode(scores: list[float], window: int, target: float) -> int | None:
    """The first episode (1-based) at whose end a full window's average reaches `target`."""
    for end in range(window, len(scores) + 1):
        if np.mean(scores[end - window:end]) >= target:
            return end
    return None
