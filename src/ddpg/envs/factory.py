"""Making the environments a run trains on: from a Gymnasium id, an Env or VectorEnv instance, or a
callable that makes one; each checked (a bounded continuous action space, flat observations) and
stepped once, so that a bad setting fails here, in one line."""

from __future__ import annotations

from typing import Any, Callable, Union

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ..config import ConfigError, EnvConfig, first_line
from ..resources import check_memory

# Generous memory per environment, to refuse absurd counts before building anything (the batched
# Reacher measured 60-120 KB per arm, a Gymnasium Pendulum 1-4 KB).
ENV_BYTES = 256 * 1024

EnvSource = Union[EnvConfig, str, gym.Env, gym.vector.VectorEnv, Callable[[], Any]]


def _from_id(config: EnvConfig, render_mode: str | None, n: int) -> gym.vector.VectorEnv:
    """The natively batched env where one is registered, else a SyncVectorEnv, with next-step autoreset."""
    try:
        spec = gym.spec(config.id)
    except gym.error.Error as err:
        raise ConfigError(f"env.id: {err}") from None
    check_memory("env.num_envs", f"{n} environments", n * ENV_BYTES)
    kwargs = dict(config.kwargs, **({"render_mode": render_mode} if render_mode else {}))
    try:
        if spec.vector_entry_point is not None:
            return gym.make_vec(config.id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
        return gym.make_vec(config.id, num_envs=n, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP}, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"env.id: {config.id} needs a package that is missing: {first_line(err)}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"env.kwargs: {config.id} refused {config.kwargs}: {first_line(err)}") from None


def env_name(source: EnvSource, env: gym.vector.VectorEnv) -> str:
    """What a run records as its env.id: the Gymnasium id; for an environment given as an object (or
    made by a callable), its registered id where it has one, else its class's name."""
    if isinstance(source, EnvConfig):
        return source.id
    if isinstance(source, str):
        return source
    inner = env.envs[0] if isinstance(env, gym.vector.SyncVectorEnv) else env
    spec = getattr(inner, "spec", None)
    return spec.id if spec is not None else type(getattr(inner, "unwrapped", inner)).__name__


def _from_object(source: Any, n: int) -> gym.vector.VectorEnv:
    """A VectorEnv as it is; an Env (one environment) or a callable that makes either."""
    if isinstance(source, gym.vector.VectorEnv):
        return source
    if isinstance(source, gym.Env):
        if n != 1:
            raise ConfigError(f"env: one Env instance cannot be {n} environments; pass a callable that makes one")
        return gym.vector.SyncVectorEnv([lambda: source], autoreset_mode=AutoresetMode.NEXT_STEP)
    made = source()
    if isinstance(made, gym.vector.VectorEnv):
        return made
    if not isinstance(made, gym.Env):
        raise ConfigError(f"env: the callable made a {type(made).__name__}, not a Gymnasium Env or VectorEnv")
    makers = [lambda: made] + [source] * (n - 1)  # the first one made is used, not thrown away
    return gym.vector.SyncVectorEnv(makers, autoreset_mode=AutoresetMode.NEXT_STEP)


def make_env(source: EnvSource, render_mode: str | None = None, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """A vector env with next-step autoreset from `source`: an EnvConfig or a Gymnasium id (the
    natively batched env where one is registered, else a SyncVectorEnv; of `num_envs` environments,
    default the config's, or 1 for an id), a VectorEnv, an Env, or a callable that makes either. Reset and stepped once (and rendered, if asked), so that
    a bad setting fails here, in one line."""
    config = EnvConfig(id=source, num_envs=1) if isinstance(source, str) else source
    n = num_envs or (config.num_envs if isinstance(config, EnvConfig) else 1)
    if isinstance(config, EnvConfig):
        env = _from_id(config, render_mode, n)
    else:
        env = _from_object(source, n)
    name = env_name(config, env)
    try:
        check_spaces(env, name)
        env.reset(seed=0)  # every episode resets with its own seed, so this leaves no trace
        env.step(env.action_space.sample())
        if render_mode:
            env.render()
    except ConfigError:
        env.close()
        raise
    except gym.error.DependencyNotInstalled as err:
        env.close()
        raise ConfigError(f"env.id: {name} needs a package that is missing: {first_line(err)}") from None
    except Exception as err:  # the environment's own code, run with the user's settings
        env.close()
        kwargs = config.kwargs if isinstance(config, EnvConfig) else {}
        raise ConfigError(f"env.kwargs: {name} failed on its first step with {kwargs} "
                          f"({type(err).__name__}: {first_line(err)})") from None
    return env


def check_spaces(env: gym.vector.VectorEnv, name: str) -> None:
    """ConfigError unless the actions are a bounded Box and the observations flat."""
    space = env.single_action_space
    if not isinstance(space, gym.spaces.Box) or not np.isfinite(space.low).all() or not np.isfinite(space.high).all():
        raise ConfigError(f"env.id: {name} needs a bounded continuous (Box) action space, has {space}")
    if len(env.single_observation_space.shape) != 1:
        raise ConfigError(f"env.id: {name} needs flat observations, has shape {env.single_observation_space.shape}")
