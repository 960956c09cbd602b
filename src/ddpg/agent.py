"""DDPG: act with the local actor, learn from replayed batches, soft-update the target copies."""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from .config import AgentConfig
from .networks import Actor, Critic
from .replay import Batch


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * Q'(s', mu'(s')); a time-limit cut is not `terminated`."""
    return rewards + gamma * (1.0 - terminated) * next_q


class SoftUpdate:
    """target <- tau * local + (1 - tau) * target for the parameters and batch-norm running statistics
    of any number of (target, local) pairs, as one foreach kernel over lists made once (the tensors
    themselves are updated in place by training and by load_state_dict, so the lists stay valid)."""

    def __init__(self, *pairs: tuple[nn.Module, nn.Module]):
        state = [(t, l) for target, local in pairs
                 for t, l in zip(target.state_dict(keep_vars=True).values(), local.state_dict(keep_vars=True).values())]
        self.targets = [t for t, _ in state if t.is_floating_point()]
        self.locals = [l for _, l in state if l.is_floating_point()]
        self.counters = [(t, l) for t, l in state if not t.is_floating_point()]  # batch norm's

    @torch.no_grad()
    def __call__(self, tau: float) -> None:
        torch._foreach_lerp_(self.targets, self.locals, tau)
        for t, l in self.counters:
            t.copy_(l)


def adam(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Fused: one kernel over all of a network's tensors (Adam's default on CPU loops over them). Its
    state is made at once rather than at the first step, so that the compiled update can use it."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    for p in module.parameters():
        optimizer.state[p] = {"step": torch.zeros(()), "exp_avg": torch.zeros_like(p),
                              "exp_avg_sq": torch.zeros_like(p)}
    return optimizer


def clip(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """nn.utils.clip_grad_norm_'s arithmetic: scale by max_norm / (norm + 1e-6) where that is < 1."""
    if max_norm <= 0:
        return grads
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    return [g * scale for g in grads]


def adam_state(optimizer: torch.optim.Adam) -> list[tuple[torch.Tensor, ...]]:
    """(parameter, exp_avg, exp_avg_sq, step) of each of the optimizer's parameters."""
    return [(p, *(optimizer.state[p][k] for k in ("exp_avg", "exp_avg_sq", "step")))
            for p in optimizer.param_groups[0]["params"]]


def adam_step(optimizer: torch.optim.Adam, state: list[tuple[torch.Tensor, ...]], grads: list[torch.Tensor]) -> None:
    """torch.optim.Adam's step, in place, in its `capturable` form (step counts stay tensors), on the
    optimizer's parameters and state as given by `adam_state`."""
    group = optimizer.param_groups[0]
    (beta1, beta2), lr, eps, weight_decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
    for (p, exp_avg, exp_avg_sq, step), g in zip(state, grads):
        if weight_decay:
            g = g + weight_decay * p
        step += 1
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = lr / (1 - beta1 ** step)
        denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step).sqrt()).add_(eps)
        p -= step_size * exp_avg / denom


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
        self.actor_optimizer = adam(self.actor, c.actor_lr, c.actor_weight_decay)
        self.critic_optimizer = adam(self.critic, c.critic_lr, c.critic_weight_decay)
        self._actor_parameters, self._critic_parameters = list(self.actor.parameters()), list(self.critic.parameters())
        self._soft_update = SoftUpdate((self.critic_target, self.critic), (self.actor_target, self.actor))
        self._critic_adam, self._actor_adam = adam_state(self.critic_optimizer), adam_state(self.actor_optimizer)
        self._compiled_update = (torch.compile(self._functional_update, fullgraph=True, dynamic=False)
                                 if c.compile else None)
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
        args = (batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminated, batch.weights)
        if self._compiled_update is None:
            out = self._update(*args)
        else:
            try:
                out = self._compiled_update(*args)
            except torch._dynamo.exc.BackendCompilerFailed as err:  # e.g. no C++ compiler on this machine
                # Compiling fails before the graph runs, so nothing has changed yet: the same update
                # runs uncompiled, as it will from now on.
                reason = (str(err.inner_exception).strip().splitlines() or [type(err.inner_exception).__name__])[0]
                print(f"ddpg: warning: agent.compile: compiling the update failed ({reason}); it runs uncompiled",
                      file=sys.stderr)
                self._compiled_update = None
                out = self._update(*args)
        self.updates += 1
        return out

    def _target(self, rewards, next_obs, terminated) -> torch.Tensor:
        with torch.no_grad():
            next_q = self.critic_target(next_obs, self.actor_target(next_obs))
            return td_target(rewards, terminated, next_q, self.config.gamma)

    @staticmethod
    def _critic_loss(critic, obs, actions, weights, y):
        q = critic(obs, actions)
        td_error = y - q
        return (weights * td_error.square()).mean(), (q.detach(), td_error.detach())

    @staticmethod
    def _outputs(critic_loss, actor_loss, q, td_error) -> dict[str, torch.Tensor]:
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "q": q.mean(),
                "td_error": td_error.abs()}

    def _update(self, obs, actions, rewards, next_obs, terminated, weights) -> dict[str, torch.Tensor]:
        """The update with autograd and torch's optimizers."""
        c = self.config
        y = self._target(rewards, next_obs, terminated)
        critic_loss, (q, td_error) = self._critic_loss(self.critic, obs, actions, weights, y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        if c.critic_grad_clip > 0:
            nn.utils.clip_grad_norm_(self._critic_parameters, c.critic_grad_clip, foreach=True)
        self.critic_optimizer.step()

        # The critic in eval mode, as when it judged the targets: its batch-norm statistics moved once
        # already in this update, and the actor climbs the Q the critic will act with (running
        # statistics), not a second batch's. Without batch norm the two modes are the same function.
        self.critic.eval()
        try:
            actor_loss = -self.critic(obs, self.actor(obs)).mean()
        finally:
            self.critic.train()
        self.actor_optimizer.zero_grad(set_to_none=True)
        # Gradients flow through the critic into the actor only; the critic's own are not touched.
        actor_loss.backward(inputs=self._actor_parameters)
        if c.actor_grad_clip > 0:
            nn.utils.clip_grad_norm_(self._actor_parameters, c.actor_grad_clip, foreach=True)
        self.actor_optimizer.step()

        self._soft_update(c.tau)
        return self._outputs(critic_loss, actor_loss, q, td_error)

    def _functional_update(self, obs, actions, rewards, next_obs, terminated, weights) -> dict[str, torch.Tensor]:
        """The same update with torch.func gradients and Adam written out, so that torch.compile
        makes the whole of it one graph (autograd's backward() and torch's optimizers would split it)."""
        c = self.config
        y = self._target(rewards, next_obs, terminated)
        critic = {name: p.detach() for name, p in self.critic.named_parameters()}
        actor = {name: p.detach() for name, p in self.actor.named_parameters()}
        # Batch norm's running statistics change in the forward pass: they enter as arguments, since a
        # function under torch.func.grad may change its arguments but nothing else.
        buffers = dict(self.critic.named_buffers()), dict(self.actor.named_buffers())

        def critic_loss(params, buffers):
            return self._critic_loss(lambda o, a: functional_call(self.critic, (params, buffers[0]), (o, a)),
                                     obs, actions, weights, y)

        def actor_loss(params, buffers):
            action = functional_call(self.actor, (params, buffers[1]), (obs,))
            return -functional_call(self.critic, (critic, buffers[0]), (obs, action)).mean()

        grads, (loss, (q, td_error)) = grad_and_value(critic_loss, has_aux=True)(critic, buffers)
        with torch.no_grad():
            adam_step(self.critic_optimizer, self._critic_adam, clip(list(grads.values()), c.critic_grad_clip))
        self.critic.eval()  # as in _update
        try:
            grads, policy_loss = grad_and_value(actor_loss)(actor, buffers)
        finally:
            self.critic.train()
        with torch.no_grad():
            adam_step(self.actor_optimizer, self._actor_adam, clip(list(grads.values()), c.actor_grad_clip))
        self._soft_update(c.tau)
        return self._outputs(loss, policy_loss, q, td_error)

    def state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self._PARTS} | {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for name in self._PARTS:
            getattr(self, name).load_state_dict(state[name])
        for optimizer in (self.actor_optimizer, self.critic_optimizer):
            for group in optimizer.param_groups:  # a checkpoint from before fused Adam stays fast
                group.update(fused=True, foreach=None)
        # Loading replaced the optimizers' state tensors.
        self._critic_adam, self._actor_adam = adam_state(self.critic_optimizer), adam_state(self.actor_optimizer)
        self.updates = state["updates"]
