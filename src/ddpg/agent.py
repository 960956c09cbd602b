"""DDPG: act with the local actor, learn from replayed batches, soft-update the target copies."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .config import AgentConfig
from .networks import Actor, Critic
from .replay import Batch


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * Q'(s', mu'(s')); a time-limit cut is not `terminated`."""
    return rewards + gamma * (1.0 - terminated) * next_q


@torch.no_grad()
def soft_update(target: nn.Module, local: nn.Module, tau: float) -> None:
    """target <- tau * local + (1 - tau) * target, parameters and batch-norm running statistics."""
    floats = [(t, l) for t, l in zip(target.state_dict().values(), local.state_dict().values())
              if t.is_floating_point()]
    torch._foreach_lerp_([t for t, _ in floats], [l for _, l in floats], tau)
    for t, l in zip(target.buffers(), local.buffers()):
        if not t.is_floating_point():  # batch-norm's batch counter
            t.copy_(l)


class DDPG:
    _PARTS = ("actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer")

    def __init__(self, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray,
                 config: AgentConfig):
        self.config = c = config
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.actor = Actor(obs_dim, low, high, c.actor_hidden, c.batch_norm, c.activation, c.layer_norm)
        self.critic = Critic(obs_dim, len(low), c.critic_hidden, c.batch_norm, c.activation, c.layer_norm,
                             c.critic_action_layer)
        self.actor_target = copy.deepcopy(self.actor).eval().requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).eval().requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr,
                                                weight_decay=c.actor_weight_decay)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr,
                                                 weight_decay=c.critic_weight_decay)
        self.updates = 0

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions of the local actor; batch norm uses its running statistics."""
        self.actor.eval()
        actions = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        self.actor.train()
        return actions.numpy()

    def learn(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update of critic then actor, then the soft update. Returns losses and |TD errors|."""
        c = self.config
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, self.actor_target(batch.next_obs))
            y = td_target(batch.rewards, batch.terminated, next_q, c.gamma)
        q = self.critic(batch.obs, batch.actions)
        td_error = y - q
        critic_loss = (batch.weights * td_error.square()).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        if c.critic_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.critic.parameters(), c.critic_grad_clip)
        self.critic_optimizer.step()

        actor_loss = -self.critic(batch.obs, self.actor(batch.obs)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        # Gradients flow through the critic into the actor only; the critic's own are not touched.
        actor_loss.backward(inputs=list(self.actor.parameters()))
        if c.actor_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.actor.parameters(), c.actor_grad_clip)
        self.actor_optimizer.step()

        soft_update(self.critic_target, self.critic, c.tau)
        soft_update(self.actor_target, self.actor, c.tau)
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "q": q.detach().mean(), "td_error": td_error.detach().abs()}

    def state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self._PARTS} | {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for name in self._PARTS:
            getattr(self, name).load_state_dict(state[name])
        self.updates = state["updates"]
