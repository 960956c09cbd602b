"""A trained policy on its own: the deterministic actor and what it needs to act (its architecture, the
action bounds, the observation and action sizes, the environment it was trained on), loaded from a run
directory, a checkpoint or a policy file, and saved as a policy file of a few kilobytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, resolve_checkpoint
from .config import first_line, load_config
from .networks import Actor
from .rundir import CHECKPOINTS, checkpoint_files

POLICY_FILE = "policy.pt"  # in a run directory, written at the solve and at the end of each session
POLICY_FORMAT = "ddpg-policy-1"


class Policy:
    """The deterministic actor of a trained run: `act(obs)` takes one observation or a batch (NumPy in,
    NumPy out) and returns actions already scaled to the action bounds."""

    def __init__(self, actor: Actor, architecture: dict[str, Any], env_id: str):
        self.actor = actor.eval().requires_grad_(False)
        self.architecture, self.env_id = architecture, env_id
        self.obs_dim, self.act_dim = architecture["obs_dim"], architecture["act_dim"]

    @classmethod
    def from_agent(cls, agent, env_id: str) -> Policy:
        """The policy of a live agent (a copy on the CPU: training the agent further leaves it as it is)."""
        c = agent.config
        architecture = {"obs_dim": agent.actor.obs_dim, "act_dim": int(agent.actor.action_scale.numel()),
                        "low": (agent.actor.action_centre - agent.actor.action_scale).tolist(),
                        "high": (agent.actor.action_centre + agent.actor.action_scale).tolist(),
                        "hidden": list(c.actor_hidden), "batch_norm": c.batch_norm, "layer_norm": c.layer_norm,
                        "activation": c.activation}
        actor = _actor(architecture)
        actor.load_state_dict({k: v.detach().cpu() for k, v in agent.actor.state_dict().items()})
        return cls(actor, architecture, env_id)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """From a policy file, a checkpoint, or a run directory (its newest checkpoint that verifies, else
        its policy.pt); CheckpointError naming the file for anything else."""
        path = Path(path)
        if path.is_dir():
            if checkpoint_files(path):
                return cls._from_checkpoint(*resolve_checkpoint(path))
            if (path / POLICY_FILE).is_file():
                return cls.load(path / POLICY_FILE)
            raise CheckpointError(f"{path}: no checkpoint yet in {path / CHECKPOINTS}, and no {POLICY_FILE}")
        payload = load_checkpoint(path)
        if payload.get("format") == POLICY_FORMAT:
            try:
                actor = _actor(payload["architecture"])
                actor.load_state_dict(payload["actor"])
                return cls(actor, payload["architecture"], payload["env_id"])
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise CheckpointError(f"{path}: damaged policy file ({first_line(err)})") from None
        return cls._from_checkpoint(path, read_checkpoint(path))

    @classmethod
    def _from_checkpoint(cls, path: Path, payload: dict) -> Policy:
        from .agent import DDPG
        config = load_config(base=payload["config"])
        # The bounds are the actor's own buffers: a placeholder here, then loaded with its weights.
        agent = DDPG(payload["obs_dim"], np.zeros(payload["act_dim"]), np.ones(payload["act_dim"]), config.agent)
        try:
            agent.actor.load_state_dict(payload["agent"]["actor"])
        except (KeyError, RuntimeError) as err:
            raise CheckpointError(f"{path}: its actor does not fit its config ({first_line(err)})") from None
        return cls.from_agent(agent, config.env.id)

    def save(self, path: str | Path) -> Path:
        """The policy file: the actor's weights, its architecture, the bounds, the sizes, the env id."""
        from .checkpoint import save_checkpoint
        return save_checkpoint({"format": POLICY_FORMAT, "actor": self.actor.state_dict(),
                                "architecture": self.architecture, "env_id": self.env_id}, path)

    def export(self, path: str | Path, format: str) -> Path:
        """The actor alone for other programs: format "onnx" (ONNX; pip install 'ddpg[export]') or "pt2"
        (torch.export: torch.export.load(path).module()); see export.py."""
        from .export import export
        return export(self, path, format)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions for one observation (obs_dim,) or a batch (n, obs_dim); ValueError for another shape."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.shape[-1:] != (self.obs_dim,) or obs.ndim not in (1, 2):
            raise ValueError(f"observations must have shape ({self.obs_dim},) or (n, {self.obs_dim}), got {obs.shape}")
        return self.actor(torch.from_numpy(obs.reshape(-1, self.obs_dim))).numpy().reshape(*obs.shape[:-1], self.act_dim)

    __call__ = act  # a policy is a function of observations, as evaluation takes it

    def __repr__(self) -> str:
        a = self.architecture
        return (f"Policy({self.env_id}: {self.obs_dim} observations -> {self.act_dim} actions, hidden {a['hidden']}"
                f"{', batch norm' if a['batch_norm'] else ''}{', layer norm' if a['layer_norm'] else ''})")


def _actor(architecture: dict[str, Any]) -> Actor:
    a = architecture
    return Actor(a["obs_dim"], torch.tensor(a["low"], dtype=torch.float32), torch.tensor(a["high"], dtype=torch.float32),
                 a["hidden"], a["batch_norm"], a["activation"], a["layer_norm"])

