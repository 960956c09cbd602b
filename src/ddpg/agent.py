"""DDPG: act with the local actor; the one update (critic, then actor, then the soft update of the
targets), run eagerly or compiled; the agent's state for checkpoints."""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.func import functional_call, grad_and_value
from torch.optim.adam import adam

from .config import AgentConfig
from .networks import Actor, Critic
from .replay import Batch


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, gamma: float,
              horizon: torch.Tensor | float = 1.0) -> torch.Tensor:
    """y = R + gamma^k * (1 - terminated) * Q'(s', mu'(s')), where R sums k rewards (k = 1: DDPG's
    one-step target); a time-limit cut is not `terminated`."""
    return rewards + gamma ** horizon * (1.0 - terminated) * next_q


def target_noise(shape: tuple[int, ...], sigma: float, clip: float, generator: torch.Generator) -> torch.Tensor:
    """TD3's target policy smoothing noise: N(0, sigma^2) clipped to [-clip, clip], in units of half the
    action range."""
    return (sigma * torch.randn(shape, generator=generator, device=generator.device)).clamp_(-clip, clip)


def smoothed(action: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """A target action with noise (in units of half the range `scale`), kept inside the action bounds."""
    return torch.clamp(action + noise * scale, centre - scale, centre + scale)


def critic_losses(td_error: torch.Tensor, kind: str) -> torch.Tensor:
    """Each sample's loss on its TD error: the square (mse), or Huber with delta 1 (huber)."""
    if kind == "huber":
        return F.huber_loss(td_error, torch.zeros_like(td_error), reduction="none", delta=1.0)
    return td_error.square()


def trust_checked_vector_isa() -> None:
    """Check, once per compile cache, only the vector instruction set that inductor will use.

    Inductor checks that every set the CPU reports builds and loads (a compile and a Python process
    each: 14.7 s on this 4-set x86 CPU with an empty compile cache, 1.6 s with a filled one, in every
    new process), then uses the best one that passed. When the best passes, checking it alone is
    enough: inductor's own `cpp.vec_isa_ok` then trusts every set, and it picks that one. A marker in
    the compile cache, keyed by torch, the C++ compiler and the CPU's sets, remembers the pass, so
    later processes check nothing; an emptied cache, another compiler or another CPU checks again.
    If the best set fails, inductor checks them all itself, as without this. A user's own choice
    (TORCHINDUCTOR_VEC_ISA_OK, ATEN_CPU_CAPABILITY, cpp.simdlen) is left to inductor. The setting is
    part of inductor's cache key, so the checking process sets it too: both find the same graphs."""
    from torch._inductor import config, cpp_builder, cpu_vec_isa
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    if config.cpp.vec_isa_ok is not None or config.cpp.simdlen is not None or os.environ.get("ATEN_CPU_CAPABILITY"):
        return
    try:
        sets = cpu_vec_isa.x86_isa_checker()
        reported = [isa for isa in cpu_vec_isa.supported_vec_isa_list if set(str(isa).split()) <= set(sets)]
        if not reported:  # not x86: inductor checks nothing
            return
        compiler = cpp_builder.get_cpp_compiler()
        key = repr((torch.__version__, compiler, cpp_builder.get_compiler_version_info(compiler), sets))
        marker = Path(cache_dir()) / f"ddpg-vec-isa-ok-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if not marker.exists():
            if not reported[0]:  # inductor's check of the set it prefers
                return
            marker.touch()
    except Exception:  # no compiler (compiling then fails and falls back), or torch's internals moved
        return
    config.cpp.vec_isa_ok = True


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


def value_and_grads(loss, network: nn.Module, *frozen: nn.Module) -> tuple[torch.Tensor, Any, list[torch.Tensor]]:
    """`loss(network, *frozen)` returns (value, aux); this returns value, aux and the gradient of value
    for each of `network`'s parameters, none for the frozen networks'. Run eagerly, autograd works on
    the modules themselves (the least overhead per update); compiled, torch.func does, so that the
    compiler makes the gradients part of the update's one graph (autograd's backward() would split it).
    There, parameters enter as detached arguments, and batch-norm statistics (changed by a forward
    pass in training mode) as arguments too: a function under torch.func.grad may change its
    arguments but nothing else."""
    if not torch.compiler.is_compiling():
        value, aux = loss(network, *frozen)
        return value, aux, list(torch.autograd.grad(value, list(network.parameters())))

    def call(module: nn.Module, params: dict, buffers: dict):
        return lambda *inputs: functional_call(module, (params, buffers), inputs)

    def differentiated(params, buffers):
        constants = [call(m, {k: p.detach() for k, p in m.named_parameters()}, b) for m, b in zip(frozen, buffers[1:])]
        return loss(call(network, params, buffers[0]), *constants)
    params = {k: p.detach() for k, p in network.named_parameters()}
    buffers = [dict(m.named_buffers()) for m in (network, *frozen)]
    grads, (value, aux) = grad_and_value(differentiated, has_aux=True)(params, buffers)
    return value, aux, list(grads.values())


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> None:
    """nn.utils.clip_grad_norm_ on gradients held in a list rather than in `.grad` (torch.func's):
    scaled in place by max_norm / (norm + 1e-6) where that is below 1; 0 means no clipping."""
    if max_norm > 0:
        norm = nn.utils.get_total_norm(grads, foreach=True)
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))


class Optimizer:
    """torch.optim.Adam for one network, stepped with gradients given as a list. The optimizer object
    holds the hyperparameters and the state, in torch's own checkpoint format; its state is made at
    once rather than at the first step, so that a compiled update finds it. The step counts live on
    the CPU for a CPU network (as torch keeps them) and on the network's device otherwise (the fused
    kernel and a CUDA graph read them there)."""

    def __init__(self, module: nn.Module, lr: float, weight_decay: float):
        self.params = list(module.parameters())
        self.torch = torch.optim.Adam(self.params, lr=lr, weight_decay=weight_decay, fused=True)
        for p in self.params:
            self.torch.state[p] = {"step": torch.zeros((), device=p.device), "exp_avg": torch.zeros_like(p),
                                   "exp_avg_sq": torch.zeros_like(p)}
        self._lists()

    def _lists(self) -> None:
        state = [self.torch.state[p] for p in self.params]
        self.exp_avgs, self.exp_avg_sqs, self.steps = ([s[k] for s in state] for k in ("exp_avg", "exp_avg_sq", "step"))
        if self.params and self.params[0].device.type == "cuda":
            # A CUDA graph replays with the addresses it captured: the state it changes in place must
            # be known to stay put (as torch's compiled optimizers mark theirs).
            for tensor in self.exp_avgs + self.exp_avg_sqs + self.steps:
                torch._dynamo.mark_static_address(tensor)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """torch's Adam step: its fused kernel when run eagerly; its single-tensor form when compiled,
        where the compiler fuses it (the fused kernel cannot be traced), in its capturable form on a
        GPU (step counts read on the device, so that the update can run as a CUDA graph)."""
        group = self.torch.param_groups[0]
        compiling = torch.compiler.is_compiling()
        adam(self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps,
             foreach=False if compiling else None, fused=not compiling,
             capturable=compiling and self.params[0].device.type == "cuda", amsgrad=False, maximize=False,
             beta1=group["betas"][0], beta2=group["betas"][1], lr=group["lr"],
             weight_decay=group["weight_decay"], eps=group["eps"])

    def state_dict(self) -> dict:
        return on_cpu(self.torch.state_dict())

    def load_state_dict(self, state: dict) -> None:
        self.torch.load_state_dict(state)
        self._lists()  # loading replaced the state tensors


def on_cpu(state):
    """A state (nested dicts and lists of tensors) with every tensor on the CPU: checkpoints are the
    same whatever device wrote them, and load onto whatever device reads them (no copy for CPU ones)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: on_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(on_cpu(v) for v in state)
    return state


class DDPG:
    """DDPG (Lillicrap et al., 2016), with the fixes of TD3 (Fujimoto et al., 2018) and n-step returns as
    options of its one update (agent.twin_critics, target_noise, policy_delay, n_step, critic_loss)."""

    def __init__(self, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray,
                 config: AgentConfig, device: str | torch.device = "cpu"):
        self.config = c = config
        self.device = torch.device(device)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.actor = Actor(obs_dim, low, high, c.actor_hidden, c.batch_norm, c.activation, c.layer_norm).to(self.device)
        self.critic = Critic(obs_dim, len(low), c.critic_hidden, c.batch_norm, c.activation, c.layer_norm,
                             c.critic_action_layer).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).eval().requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).eval().requires_grad_(False)
        self.actor_optimizer = Optimizer(self.actor, c.actor_lr, c.actor_weight_decay)
        self.critic_optimizer = Optimizer(self.critic, c.critic_lr, c.critic_weight_decay)
        self._parts = ["actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer"]
        pairs = [(self.critic_target, self.critic), (self.actor_target, self.actor)]
        self.critic2 = self.critic2_target = self.critic2_optimizer = None
        if c.twin_critics:  # initialized apart from the first (the global generator moved on)
            self.critic2 = Critic(obs_dim, len(low), c.critic_hidden, c.batch_norm, c.activation, c.layer_norm,
                                  c.critic_action_layer).to(self.device)
            self.critic2_target = copy.deepcopy(self.critic2).eval().requires_grad_(False)
            self.critic2_optimizer = Optimizer(self.critic2, c.critic_lr, c.critic_weight_decay)
            self._parts += ["critic2", "critic2_target", "critic2_optimizer"]
            pairs.append((self.critic2_target, self.critic2))
        self._soft_update = SoftUpdate(*pairs)
        # Target noise from a generator of the agent's own, seeded from the global one and saved with the
        # agent, so that a resumed run draws what an uninterrupted one would.
        self.generator = None
        if c.target_noise > 0 and self.device.type != "meta":  # meta: networks sized, nothing drawn
            seed = int(torch.randint(2**62, (), dtype=torch.int64, device="cpu"))
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._actor_loss = torch.zeros((), device=self.device)  # the latest actor update's (policy_delay > 1)
        # On a GPU the compiled update runs as a CUDA graph: one launch for the whole update.
        self._graph = c.compile and self.device.type == "cuda"
        # Dynamo keeps at most torch._dynamo.config.recompile_limit (8) graphs per code object, each guarded
        # on `self`: the ninth agent compiled in one process (a notebook, a sweep's reused worker) failed.
        # A copy of the update's code for each agent keeps each agent's graphs (one or two) its own.
        own = types.FunctionType(DDPG._update.__code__.replace(), globals(), "_update").__get__(self)
        if c.compile and self.device.type == "cpu":
            trust_checked_vector_isa()
        self._compiled_update = torch.compile(own, fullgraph=True, dynamic=False,
                                              mode="reduce-overhead" if self._graph else None) if c.compile else None
        self.updates = 0
        self._acting = self.actor.acting()  # None with batch norm

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions of the local actor; batch norm uses its running statistics. The
        observations go to the device once, the actions come back once."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self._acting is not None:
            return self._acting(obs).cpu().numpy()
        self.actor.eval()
        actions = self.actor(obs)
        self.actor.train()
        return actions.cpu().numpy()

    def learn(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update (see _update), compiled when agent.compile is set. Returns losses and |TD errors|.
        Random draws happen here, outside any compiled graph, from the agent's own generator; whether
        the actor updates is a flag, so the compiler makes at most two graphs, one for each."""
        c = self.config
        noise = None if self.generator is None else \
            target_noise(batch.actions.shape, c.target_noise, c.target_noise_clip, self.generator)
        actor_step = (self.updates + 1) % c.policy_delay == 0
        args = (batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminated, batch.horizon,
                batch.weights, noise, actor_step)
        if self._compiled_update is None:
            out = self._update(*args)
        else:
            try:
                if self._graph:  # the graph's outputs from the last call may be overwritten: a new step
                    torch.compiler.cudagraph_mark_step_begin()
                out = self._compiled_update(*args)
            except torch._dynamo.exc.BackendCompilerFailed as err:  # e.g. no C++ compiler on this machine
                # Compiling fails before the graph runs, so nothing has changed yet: the same update
                # runs uncompiled, as it will from now on.
                reason = (str(err.inner_exception).strip().splitlines() or [type(err.inner_exception).__name__])[0]
                print(f"ddpg: warning: agent.compile: compiling the update failed ({reason}); it runs uncompiled",
                      file=sys.stderr)
                self._compiled_update = None
                out = self._update(*args)
        if actor_step:  # kept apart from the outputs, which a CUDA graph's next replay overwrites
            self._actor_loss = out["actor_loss"].clone()
        self.updates += 1
        return out | {"actor_loss": self._actor_loss}

    def _update(self, obs, actions, rewards, next_obs, terminated, horizon, weights, noise,
                actor_step) -> dict[str, torch.Tensor]:
        """The DDPG update: the critic descends the weighted TD error's loss against the targets' y,
        the actor climbs the updated critic's Q(s, mu(s)), then the targets follow by tau. Its
        options: two critics (y from the smaller target value), noise on the target action, the actor
        and the targets every policy_delay-th update only, n-step returns, a Huber loss."""
        c = self.config
        with torch.no_grad():
            next_action = self.actor_target(next_obs)
            if noise is not None:
                next_action = smoothed(next_action, noise, self.actor.action_scale, self.actor.action_centre)
            next_q = self.critic_target(next_obs, next_action)
            if self.critic2 is not None:
                next_q = torch.minimum(next_q, self.critic2_target(next_obs, next_action))
            y = td_target(rewards, terminated, next_q, c.gamma, horizon)

        def critic_loss(critic):
            q = critic(obs, actions)
            td_error = y - q
            return (weights * critic_losses(td_error, c.critic_loss)).mean(), (q.detach(), td_error.detach())

        def actor_loss(actor, critic):
            return -critic(obs, actor(obs)).mean(), ()

        loss_critic, (q, td_error), grads = value_and_grads(critic_loss, self.critic)
        clip_grad_norm(grads, c.critic_grad_clip)
        self.critic_optimizer.step(grads)
        if self.critic2 is not None:
            _, _, grads = value_and_grads(critic_loss, self.critic2)
            clip_grad_norm(grads, c.critic_grad_clip)
            self.critic2_optimizer.step(grads)
        out = {"critic_loss": loss_critic.detach(), "q": q.mean(), "td_error": td_error.abs()}
        if not actor_step:
            return out

        # The critic in eval mode, as when it judged the targets: its batch-norm statistics moved once
        # already in this update, and the actor climbs the Q the critic will act with (running
        # statistics), not a second batch's. Without batch norm the two modes are the same function.
        self.critic.eval()
        try:
            loss_actor, _, grads = value_and_grads(actor_loss, self.actor, self.critic)
        finally:
            self.critic.train()
        clip_grad_norm(grads, c.actor_grad_clip)
        self.actor_optimizer.step(grads)

        self._soft_update(c.tau)
        return out | {"actor_loss": loss_actor.detach()}

    def state_dict(self) -> dict:
        extra = {"generator": self.generator.get_state()} if self.generator is not None else {}
        return {name: on_cpu(getattr(self, name).state_dict()) for name in self._parts} | {"updates": self.updates} | extra

    def load_state_dict(self, state: dict) -> None:
        for name in self._parts:
            getattr(self, name).load_state_dict(state[name])
        if self.generator is not None:
            self.generator.set_state(state["generator"])
        self.updates = state["updates"]
