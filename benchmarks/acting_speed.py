"""Acting for 20 Reacher arms with the shipped actor: `DDPG.act` (the actor as torch's own calls on its
tensors) against the actor module's forward, in one process, interleaved: the median over 9 rounds of
2000 actions each, and the ratio. Run: python benchmarks/acting_speed.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ddpg.agent import DDPG
from ddpg.config import load_config

CONFIG = Path(__file__).parent.parent / "configs" / "reacher.toml"


def main() -> None:
    torch.set_num_threads(1)
    agent = DDPG(33, -np.ones(4), np.ones(4), load_config(CONFIG, ["agent.compile=false"]).agent)
    obs = np.random.default_rng(0).standard_normal((20, 33))

    @torch.no_grad()
    def forward(o: np.ndarray) -> np.ndarray:
        return agent.actor(torch.as_tensor(o, dtype=torch.float32)).numpy()
    assert np.array_equal(agent.act(obs), forward(obs))
    times: dict[str, list[float]] = {"forward": [], "act": []}
    for _ in range(9):
        for name, f in (("forward", forward), ("act", agent.act)):
            for _ in range(200):
                f(obs)
            start = time.perf_counter()
            for _ in range(2000):
                f(obs)
            times[name].append((time.perf_counter() - start) / 2000 * 1e6)
    forward_us, act_us = (float(np.median(times[k])) for k in ("forward", "act"))
    print(f"forward {forward_us:.1f} us, act {act_us:.1f} us an action for 20 arms: {act_us / forward_us:.2f} of the time")


if __name__ == "__main__":
    main()
