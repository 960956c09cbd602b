"""Actor and critic of DDPG (Lillicrap et al., 2016), sizes and details configurable."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

# The paper's final-layer initialization: small, so early actions and values sit near zero.
FINAL_INIT = 3e-3


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU()}[name]


def _hidden(in_features: int, out_features: int, layer_norm: bool, activation: str) -> list[nn.Module]:
    norm = [nn.LayerNorm(out_features)] if layer_norm else []
    return [nn.Linear(in_features, out_features), *norm, _activation(activation)]


def _final(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.uniform_(layer.weight, -FINAL_INIT, FINAL_INIT)
    nn.init.uniform_(layer.bias, -FINAL_INIT, FINAL_INIT)
    return layer


class Actor(nn.Module):
    """state -> [batch norm] -> hidden layers [each layer-normed] -> tanh, scaled to the action bounds."""

    def __init__(self, obs_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                 hidden: list[int], batch_norm: bool = True, activation: str = "leaky_relu",
                 layer_norm: bool = False):
        super().__init__()
        self.obs_dim = obs_dim
        layers: list[nn.Module] = [nn.BatchNorm1d(obs_dim)] if batch_norm else []
        sizes = [obs_dim, *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += _hidden(a, b, layer_norm, activation)
        layers += [_final(sizes[-1], len(action_low)), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.register_buffer("action_scale", (action_high - action_low) / 2)
        self.register_buffer("action_centre", (action_high + action_low) / 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Each layer's forward called directly: nn.Module's call machinery (hooks, none here) costs a few
        # microseconds a layer; acting for 20 arms takes 0.85 of the time (docs/benchmarks.md).
        x = obs
        for layer in self.body:
            x = layer.forward(x)
        return self.action_centre + self.action_scale * x

    def acting(self) -> ActorCalls | None:
        """forward as torch's own calls on this actor's tensors (ActorCalls); None with batch norm (its
        mode decides its function) or a layer it does not know."""
        calls: list[tuple[Callable, tuple]] = []
        for m in self.body:
            if isinstance(m, nn.Linear):
                calls.append((F.linear, (m.weight, m.bias)))
            elif isinstance(m, nn.LayerNorm):
                calls.append((torch.layer_norm, (m.normalized_shape, m.weight, m.bias, m.eps)))
            elif isinstance(m, nn.LeakyReLU):
                calls.append((F.leaky_relu, (m.negative_slope,)))
            elif type(m) in (nn.ReLU, nn.Tanh):
                calls.append((torch.relu if isinstance(m, nn.ReLU) else torch.tanh, ()))
            else:
                return None
        return ActorCalls(calls, self.action_centre, self.action_scale)


class ActorCalls:
    """An actor's forward as torch's own calls on its tensors, looked up once: the same numbers without
    each layer's attribute lookups and functional wrappers, about three quarters of forward's time
    for 20 observations (acting is most of a light episode). The tensors stay the actor's: training and
    load_state_dict change them in place, and a deep copy of the agent copies them with the actor's
    (they are data here, not captured by closures)."""

    def __init__(self, calls: list[tuple[Callable, tuple]], centre: torch.Tensor, scale: torch.Tensor):
        self.calls, self.centre, self.scale = calls, centre, scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for call, args in self.calls:
            x = call(x, *args)
        return self.centre + self.scale * x


class Critic(nn.Module):
    """(state, action) -> Q: the state through [batch norm] and the first `action_layer` hidden layers,
    then the action joins (1, the paper's choice: at the second layer; 0: at the input, as SB3);
    [each hidden layer layer-normed]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], batch_norm: bool = True,
                 activation: str = "leaky_relu", layer_norm: bool = False, action_layer: int = 1):
        super().__init__()
        state: list[nn.Module] = [nn.BatchNorm1d(obs_dim)] if batch_norm else []
        sizes = [obs_dim, *hidden]
        for a, b in zip(sizes[:action_layer], sizes[1:action_layer + 1]):
            state += _hidden(a, b, layer_norm, activation)
        self.state_layer = nn.Sequential(*state)
        head: list[nn.Module] = []
        sizes = [sizes[action_layer] + act_dim, *hidden[action_layer:]]
        for a, b in zip(sizes[:-1], sizes[1:]):
            head += _hidden(a, b, layer_norm, activation)
        head.append(_final(sizes[-1], 1))
        self.head = nn.Sequential(*head)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        # The layer where the action joins, W [x, a] + b, as W_x x + W_a a + b: no concatenated copy,
        # and the actor's backward pass, which needs only dQ/da, skips the large product for dQ/dx.
        join, *rest = self.head
        features = join.in_features - action.shape[-1]
        x = F.linear(self.state_layer(obs), join.weight[:, :features], join.bias)
        x = x + F.linear(action, join.weight[:, features:])
        for layer in rest:
            x = layer(x)
        return x.squeeze(-1)
