"""Typed configuration: dataclasses with a one-line doc per field, read from TOML, overridable.

Every mistake (unknown key, wrong type, value out of range) raises ConfigError with one line that
names the key, before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration mistake; its message names the key."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (or its type's name): what a one-line error shows."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def setting(default: Any, doc: str) -> Any:
    """A config field with its one-line doc, kept in the field's metadata: readable wherever the
    package is installed (Python keeps no attribute docstrings, and a zipped install no source).
    A list or table default is copied for each instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class EnvConfig:
    id: str = setting("ddpg/Reacher-v0", "Gymnasium id of a continuous-action environment.")
    num_envs: int = setting(20,
        "Environments (for Reacher: arms) stepped together; all feed one replay buffer.")
    kwargs: dict[str, Any] = setting({},
        "Extra keyword arguments for the environment's constructor (e.g. goal_speed).")


@dataclass
class AgentConfig:
    actor_hidden: list[int] = setting([128, 128], "Hidden layer sizes of the actor.")
    critic_hidden: list[int] = setting([128, 128], "Hidden layer sizes of the critic.")
    critic_action_layer: int = setting(1,
        "Where the action joins the critic: 1, at the second layer (the paper); 0, at the input (as SB3).")
    batch_norm: bool = setting(False, "Batch-normalize the state at each network's input.")
    layer_norm: bool = setting(True,
        "Layer-normalize every hidden layer (per sample: the same in training, acting and targets).")
    activation: Literal["relu", "leaky_relu"] = setting("leaky_relu", "Hidden-layer activation.")
    actor_lr: float = setting(1e-3, "Adam learning rate of the actor.")
    critic_lr: float = setting(1e-3, "Adam learning rate of the critic.")
    actor_weight_decay: float = setting(0.0, "L2 weight decay of the actor (0: none).")
    critic_weight_decay: float = setting(0.0, "L2 weight decay of the critic (0: none).")
    gamma: float = setting(0.99, "Discount: near 1 values the far future, 0 only the next reward.")
    tau: float = setting(5e-3, "Soft update: target <- tau * local + (1 - tau) * target, after every update.")
    batch_size: int = setting(256, "Transitions per update.")
    buffer_size: int = setting(1_000_000,
        "Replay buffer capacity, in transitions (one per environment per step).")
    warmup_steps: int = setting(0, "Steps (of all environments at once) at the start with no learning.")
    warmup_random: bool = setting(True,
        "Act uniformly at random during warm-up (as SB3 and CleanRL); false: the actor plus its noise.")
    learn_every: int = setting(10, "Learn every this many steps...")
    updates_per_learn: int = setting(10, "...with this many updates each time.")
    effort: Literal["constant", "score"] = setting("constant",
        "Learning effort per episode: constant (every update above), or score: effort_floor of the updates after "
        "an episode that scores at least effort_score, all of them again after one that does not; with neither "
        "it nor train.target_score, effort_floor once the trailing average has stopped rising (effort_patience, "
        "effort_margin).")
    effort_score: float | None = setting(None,
        "The episode score from which the effort is low (score schedule); none: train.target_score. Above the "
        "target, it keeps learning until episodes score what the solved agent should hold.")
    effort_floor: float = setting(0.01,
        "The fraction of the updates run while the effort is low (score schedule); spread evenly over the episode.")
    effort_patience: int = setting(10,
        "With no target: episodes without the trailing average beating its best by more than effort_margin "
        "before the effort goes low.")
    effort_margin: float = setting(0.0,
        "With no target: how far (in score) the last episode may fall below the best trailing average before "
        "the effort comes back; and the least rise that counts as one.")
    critic_grad_clip: float = setting(1.0, "Maximum gradient norm of the critic (0: no clipping).")
    actor_grad_clip: float = setting(0.0, "Maximum gradient norm of the actor (0: no clipping).")
    twin_critics: bool = setting(False,
        "Two critics, each learning from the same target: the smaller of the two target critics' values "
        "(clipped double Q, Fujimoto et al., 2018, TD3); the actor climbs the first critic.")
    target_noise: float = setting(0.0,
        "Target policy smoothing (TD3): Gaussian noise of this scale on the target actor's actions, in units "
        "of half the action range (0: none).")
    target_noise_clip: float = setting(0.5,
        "The target noise is clipped to +-this, in units of half the action range.")
    policy_delay: int = setting(1,
        "The actor and every target network update once every this many critic updates (TD3: 2).")
    n_step: int = setting(1,
        "Rewards summed before the target bootstraps: n-step returns (Sutton, 1988; D4PG, Barth-Maron et al., "
        "2018); each environment's own n steps, fewer where its episode ends. 1 is DDPG's one-step target.")
    critic_loss: Literal["mse", "huber"] = setting("mse",
        "The critic's loss on the TD error: squared (mse), or Huber with delta 1 (half the square within 1, "
        "linear beyond, so that large errors pull less).")
    compile: bool = setting(False,
        "Compile the whole update into one graph (torch.compile, needs a C++ compiler): about 1.8x the "
        "updates/s at 128-128; the first update waits for the compiler (about 25 s, less from its disk "
        "cache).")


@dataclass
class ReplayConfig:
    prioritized: bool = setting(False,
        "Prioritized experience replay (Schaul et al., 2016) instead of uniform sampling.")
    alpha: float = setting(0.6,
        "How strongly priorities shape sampling: P(i) ~ (|TD error| + epsilon)^alpha; 0 is uniform.")
    beta: float = setting(0.4,
        "Starting exponent of the importance-sampling weights (N * P)^-beta; annealed to 1.")
    beta_steps: int = setting(100_000, "Updates over which beta rises linearly to 1.")
    epsilon: float = setting(1e-6, "Added to |TD error| so that no transition's priority is zero.")


@dataclass
class NoiseConfig:
    kind: Literal["ou", "gaussian"] = setting("ou",
        "Exploration noise: Ornstein-Uhlenbeck or Gaussian, one independent process per environment.")
    sigma: float = setting(0.2, "Noise scale, in units of half the action range.")
    theta: float = setting(0.15, "Ornstein-Uhlenbeck pull toward zero per step.")
    schedule: Literal["constant", "exponential", "score"] = setting("constant",
        "How sigma is scaled per episode: constant, decay ** episode, or shrinking as the trailing score "
        "nears the target.")
    decay: float = setting(0.99, "Per-episode factor of the exponential schedule.")
    floor: float = setting(0.0, "Smallest scale the exponential and score schedules go down to.")


@dataclass
class TrainConfig:
    seed: int = setting(0, "Seeds every random generator (Python, NumPy, torch, the environment).")
    episodes: int | None = setting(300, 'Episode budget ("none": only the step budget counts).')
    steps: int | None = setting(None,
        'Step budget: environment steps over all environments, as SB3\'s total_timesteps ("none": only the '
        "episode budget counts). Whichever budget runs out first ends the run, at the end of an episode.")
    target_score: float | None = setting(30.0,
        'Stop when the trailing average reaches this ("none": run the whole budget).')
    window: int = setting(100, "Episodes in the trailing average.")
    solve_on: Literal["train", "eval"] = setting("train",
        "What the target is checked on: the trailing average of training scores (the course's rule), or "
        "each evaluation's mean score.")
    eval_every: int = setting(0,
        "Evaluate the deterministic policy every this many episodes (0: not by episodes).")
    eval_every_steps: int = setting(0,
        "...or after the episode that passes every this many environment steps (0: not by steps).")
    eval_episodes: int = setting(5,
        "Episodes per evaluation, on an environment of its own with its own seeds (the same ones each "
        "time).")
    checkpoint_every: int = setting(10,
        "Write a checkpoint every this many episodes (and on reaching the target).")
    keep_checkpoints: int = setting(3, "How many periodic checkpoints to keep.")
    save_buffer: bool = setting(True,
        "Put the replay buffer into checkpoints, so a resumed run continues exactly.")
    tensorboard: bool = setting(True, "Also log metrics for TensorBoard (always: metrics.csv).")
    wandb: bool = setting(False,
        "Also log to Weights & Biases (pip install ddpg[wandb]); offline unless WANDB_MODE says otherwise.")
    device: str = setting("auto",
        "Where the networks, their optimizers and the replay buffer live: auto (CUDA when there is a GPU, "
        "else the CPU), cpu, cuda, cuda:N or mps; the environments always step on the CPU.")
    threads: int = setting(1,
        "torch CPU threads, at most this machine's cores (0: torch's default; small networks gain little from "
        "more, and one leaves a core "
        "free).")


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_docs() -> dict[str, str]:
    """{"agent.tau": "Soft update: ..."}: the doc of every field, by its dotted key."""
    return {f"{section.name}.{f.name}": f.metadata["doc"]
            for section in dataclasses.fields(Config) for f in dataclasses.fields(section.default_factory)}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"agent": {"tau": 0.01}} -> {"agent.tau": 0.01}; env.kwargs stays one setting."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "kwargs":
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """The value, converted where harmless (int to float); ConfigError if it is not of `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or str(value).lower() == "none"):
            return None  # TOML has no null: the string "none" stands for it
        return _check_type(key, value, next(a for a in args if a is not type(None)))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    return value


def merge(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set the dataclass's fields from `values` (tables for nested dataclasses), each type-checked;
    ConfigError naming the key."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table, got {value!r}")
            merge(current, value, f"{path}.")
        else:
            setattr(obj, key, _check_type(path, value, hints[key]))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(config: Config) -> Config:
    a, n, t, e, r = config.agent, config.noise, config.train, config.env, config.replay
    _require(0 <= r.alpha <= 1, f"replay.alpha: must be in [0, 1] (0: uniform, 1: fully prioritized), got {r.alpha}")
    _require(0 <= r.beta <= 1, f"replay.beta: must be in [0, 1], got {r.beta}")
    _require(r.beta_steps >= 1, f"replay.beta_steps: must be at least 1, got {r.beta_steps}")
    _require(r.epsilon > 0, f"replay.epsilon: must be positive, got {r.epsilon}")
    _require(e.num_envs >= 1, f"env.num_envs: must be at least 1, got {e.num_envs}")
    for key in ("actor_hidden", "critic_hidden"):
        sizes = getattr(a, key)
        _require(len(sizes) >= 1 and min(sizes) >= 1, f"agent.{key}: need at least one layer, all sizes >= 1, got {sizes}")
    _require(0 <= a.critic_action_layer < len(a.critic_hidden),
             f"agent.critic_action_layer: must be from 0 to {len(a.critic_hidden) - 1} "
             f"(one less than the critic's {len(a.critic_hidden)} hidden layers), got {a.critic_action_layer}")
    for key in ("actor_lr", "critic_lr"):
        _require(getattr(a, key) > 0, f"agent.{key}: must be positive, got {getattr(a, key)}")
    for key in ("actor_weight_decay", "critic_weight_decay", "critic_grad_clip", "actor_grad_clip"):
        _require(getattr(a, key) >= 0, f"agent.{key}: must be >= 0, got {getattr(a, key)}")
    _require(0 <= a.gamma <= 1, f"agent.gamma: must be in [0, 1], got {a.gamma}")
    _require(0 < a.tau <= 1, f"agent.tau: must be in (0, 1], got {a.tau}")
    _require(a.batch_size >= 1, f"agent.batch_size: must be at least 1, got {a.batch_size}")
    _require(a.buffer_size >= a.batch_size,
             f"agent.buffer_size: {a.buffer_size} is smaller than agent.batch_size {a.batch_size}")
    _require(a.warmup_steps >= 0, f"agent.warmup_steps: must be >= 0, got {a.warmup_steps}")
    _require(a.learn_every >= 1, f"agent.learn_every: must be at least 1, got {a.learn_every}")
    _require(a.updates_per_learn >= 0, f"agent.updates_per_learn: must be >= 0, got {a.updates_per_learn}")
    for key in ("target_noise", "target_noise_clip"):
        _require(getattr(a, key) >= 0, f"agent.{key}: must be >= 0, got {getattr(a, key)}")
    _require(a.policy_delay >= 1, f"agent.policy_delay: must be at least 1, got {a.policy_delay}")
    _require(0 < a.effort_floor <= 1, f"agent.effort_floor: must be in (0, 1], got {a.effort_floor}")
    _require(a.effort_patience >= 1, f"agent.effort_patience: must be at least 1, got {a.effort_patience}")
    _require(a.effort_margin >= 0, f"agent.effort_margin: must be >= 0, got {a.effort_margin}")
    _require(a.n_step >= 1, f"agent.n_step: must be at least 1, got {a.n_step}")
    _require(n.sigma >= 0, f"noise.sigma: must be >= 0, got {n.sigma}")
    _require(0 <= n.theta <= 1, f"noise.theta: must be in [0, 1], got {n.theta}")
    _require(0 < n.decay <= 1, f"noise.decay: must be in (0, 1], got {n.decay}")
    _require(0 <= n.floor <= 1, f"noise.floor: must be in [0, 1], got {n.floor}")
    _require(t.episodes is None or t.episodes >= 1, f"train.episodes: must be at least 1, got {t.episodes}")
    _require(t.steps is None or t.steps >= 1, f"train.steps: must be at least 1, got {t.steps}")
    _require(t.episodes is not None or t.steps is not None,
             'train.episodes: a run needs a budget: train.episodes or train.steps (both are "none")')
    _require(t.eval_every >= 0, f"train.eval_every: must be >= 0, got {t.eval_every}")
    _require(t.eval_every_steps >= 0, f"train.eval_every_steps: must be >= 0, got {t.eval_every_steps}")
    _require(t.eval_episodes >= 1, f"train.eval_episodes: must be at least 1, got {t.eval_episodes}")
    _require(t.solve_on == "train" or t.eval_every or t.eval_every_steps,
             'train.solve_on: "eval" needs evaluations: set train.eval_every or train.eval_every_steps')
    _require(not a.batch_norm or a.batch_size >= 2,
             "agent.batch_size: batch norm (agent.batch_norm) needs at least 2 samples a batch, got 1")
    _require(t.window >= 1, f"train.window: must be at least 1, got {t.window}")
    _require(t.checkpoint_every >= 1, f"train.checkpoint_every: must be at least 1, got {t.checkpoint_every}")
    _require(t.keep_checkpoints >= 1, f"train.keep_checkpoints: must be at least 1, got {t.keep_checkpoints}")
    _require(t.threads >= 0, f"train.threads: must be >= 0 (0: torch's default), got {t.threads}")
    _require(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device) is not None,
             f"train.device: must be auto, cpu, cuda, cuda:N or mps, got {t.device!r}")
    _require(0 <= t.seed < 2**32, f"train.seed: must be from 0 to {2**32 - 1}, got {t.seed}")
    return config


def warnings_for(config: Config) -> list[str]:
    """Settings that run but are likely mistakes."""
    t, found = config.train, []
    if config.agent.gamma == 1:
        found.append("agent.gamma = 1: on a task that never terminates (Reacher ends by time limit only) the "
                     "values grow without bound; use gamma < 1 unless every episode truly ends")
    if t.target_score is not None and t.solve_on == "train" and t.episodes is not None and t.window > t.episodes:
        found.append(f"train.window: a {t.window}-episode average cannot fill a budget of {t.episodes} episodes, "
                     "so this run cannot be solved; it runs its whole budget")
    return found


def parse_override(text: str) -> tuple[list[str], Any]:
    """'agent.gamma=0.98' -> (['agent', 'gamma'], 0.98); the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{text}: an override looks like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """{"agent.tau": 0.01} -> {"agent": {"tau": 0.01}}."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *sections, name = key.split(".")
        table = nested
        for section in sections:
            table = table.setdefault(section, {})
        table[name] = value
    return nested


def with_values(base: dict[str, Any], values: dict[str, Any]) -> Config:
    """The config `base` (a saved config) with dotted keys set to typed values, validated."""
    config = load_config(base=base)
    merge(config, nest(values))
    return validate(config)


# A config or sweep file is a few KB; reading stops past this, so that /dev/zero or a wrong file is
# refused rather than read until memory runs out.
MAX_CONFIG_BYTES = 1 << 20


def read_config_text(path: Path) -> str:
    """A config (or sweep) file's text; ConfigError naming it if it is larger than MAX_CONFIG_BYTES,
    OSError or UnicodeDecodeError as reading raises them."""
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config file is a few KB of TOML")
    return data.decode()


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                base: dict[str, Any] | None = None) -> Config:
    """Defaults, then `base` (a saved config), then the TOML file, then `section.key=value` overrides."""
    config = Config()
    if base:
        merge(config, base)
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(read_config_text(path))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read it ({err.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from None
        merge(config, data)
    for text in overrides:
        keys, value = parse_override(text)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        merge(config, nested)
    return validate(config)
