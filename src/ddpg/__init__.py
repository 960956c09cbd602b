"""DDPG for continuous control, with a batched MuJoCo re-creation of the 20-arm Unity Reacher.

The Python API (docs/api.md): ddpg.train, ddpg.evaluate, ddpg.Policy (load, act, save, export), ddpg.make_env, ddpg.load_config.
They load on first use: `import ddpg` itself only registers ddpg/Reacher-v0 with Gymnasium.
"""

import importlib

from . import envs  # registers ddpg/Reacher-v0

_API = {"train": "api", "evaluate": "api", "Run": "api", "Policy": "policy", "make_env": "envs.factory",
        "load_config": "config", "Config": "config", "ConfigError": "config"}
__all__ = ["envs", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'ddpg' has no attribute {name!r}")
