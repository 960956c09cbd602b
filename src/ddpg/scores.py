"""Episode scores: the trailing average and the solve criterion (the course's definitions), and the
learning effort they call for."""

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


def learning_effort(scores: list[float], target: float | None, window: int, floor: float, patience: int,
                    margin: float) -> float:
    """The fraction of the configured updates to run in the next episode, from the episodes' scores so
    far (the score schedule). With a target: `floor` after an episode that scored at least the target,
    1 after one that did not, so that a collapse brings the whole effort back at once. With none:
    `floor` once the trailing average has not beaten its best by more than `margin` for `patience`
    episodes and the last episode scored within `margin` of that best; else 1."""
    if not scores:
        return 1.0
    if target is not None:
        return floor if scores[-1] >= target else 1.0
    averages = np.array([np.mean(scores[max(0, end - window):end]) for end in range(1, len(scores) + 1)])
    best = np.maximum.accumulate(averages)
    if len(scores) <= patience or best[-1] - best[-1 - patience] > margin:
        return 1.0
    return floor if scores[-1] >= best[-1] - margin else 1.0
