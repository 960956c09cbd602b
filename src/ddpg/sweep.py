"""Sweeps: many runs of the trainer, searched and scheduled by Ray Tune, locally or on a cluster.

A sweep file is read and checked completely before Ray is imported. Each trial is an ordinary run
directory under the sweep's folder, written by the trainer, which reports every episode to Tune; a
retried or resumed trial continues from its own last checkpoint with the trainer's resume.
Ray and Optuna come with the extra `ddpg[sweep]`; nothing else in the package imports this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import signal
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .config import ConfigError, first_line, load_config, merge, read_config_text, setting, with_values
from .rundir import RunLock, in_use, is_run, read_outcome, write_config_file, write_outcome
from .tracking import score_columns
from .envs.factory import ENV_BYTES, make_env
from .resources import memory_needed
from .trainer import Trainer, TrainingError

TRIALS = "trials"  # the trials' run directories, inside the sweep's folder
COMPLETED = "completed-trials.txt"  # Tune's ids of the trials that ended, one a line
SWEEP_FILE, SWEEP_STATE = "sweep.toml", "sweep.json"
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
# A Ray worker process with torch imported, before any run allocates anything (measured: ~0.4 GB).
WORKER_BYTES = 512 * 2**20
LOCK_WAIT_SECONDS = 180  # longer than NFS's default 90 s lease, after which a dead client's locks go
# Ray Tune keeps no resumable state for more grid points than this (its SERIALIZATION_THRESHOLD).
RESUMABLE_GRID_POINTS = 1_000_000
# Combinations of the space's values checked one by one before Ray starts; beyond, each key alone is.
CHECKED_COMBINATIONS = 10_000
# The folder of the sweep this process drives, for Tune's callbacks (see _progress).
driving: Path | None = None
INSTALL = "ddpg sweep needs Ray Tune and Optuna: pip install 'ddpg[sweep]'"


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message names the file, key or flag."""


@dataclass
class SweepSettings:
    seeds: list[int] = setting([],
        "Every configuration runs once with each of these seeds, so no result rests on one seed.")
    search: Literal["grid", "random", "optuna"] = setting("grid",
        "grid: every combination of the grid values; random: `samples` random draws; optuna: TPE over "
        "`samples` configurations.")
    samples: int = setting(1,
        "Configurations drawn (random, optuna); with grid, draws of any choice/uniform keys, each crossed "
        "with the grid.")
    metric: Literal["trailing_avg", "score", "episodes_to_target"] = setting("trailing_avg",
        "What ranks configurations: the final trailing average, the final episode score, or the solve "
        "episode.")
    mode: Literal["max", "min"] = setting("max",
        "Whether the metric is better high (max) or low (min; episodes_to_target).")
    scheduler: Literal["fifo", "asha"] = setting("fifo",
        "fifo: every trial runs its whole budget; asha: trials behind their peers stop early, judged over "
        "episodes.")
    grace_period: int = setting(10, "asha: episodes every trial runs before it can be stopped.")
    reduction_factor: float = setting(3.0, "asha: one trial in this many goes on at each rung.")
    episodes: int | None = setting(None,
        "Episode budget of each trial (default: the base config's train.episodes).")
    max_concurrent: int | None = setting(None,
        "Trials at a time (default: as many as the CPUs and the memory hold, each trial's replay buffer "
        "counted).")
    cpus_per_trial: int = setting(1, "CPUs per trial; the trial's torch threads are set to match.")
    gpus_per_trial: float = setting(0.0,
        "GPUs per trial, a fraction to share one (0.25: four trials a GPU); above 0 a trial trains on the GPU "
        "Ray gives it, at 0 on the CPU.")


@dataclass
class Sweep:
    """A checked sweep file: the full base config, the search space and the settings."""
    name: str
    text: str  # the file as written, kept in the sweep's folder
    base: dict[str, Any]  # the base config file with [overrides] applied, every field resolved
    space: dict[str, dict[str, list]]  # config key -> {distribution: values}
    settings: SweepSettings

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        return cls(**(data | {"settings": SweepSettings(**data["settings"])}))

    def search_spec(self) -> dict[str, Any]:
        """What must not change when a sweep is resumed."""
        return {"base": self.base, "space": self.space, "settings": dataclasses.asdict(self.settings)}

    @property
    def episodes(self) -> int | None:
        return self.settings.episodes or self.base["train"]["episodes"]

    @property
    def grid_points(self) -> int:
        """Points of the grid keys crossed with the seeds: what Ray Tune generates and keeps."""
        return math.prod(len(spec["grid"]) for spec in self.space.values() if "grid" in spec) * len(self.settings.seeds)

    @property
    def trials(self) -> int:
        """How many trials the sweep runs: each grid point (each crossed with `samples` draws of the other
        keys), or each of Optuna's `samples` configurations once per seed."""
        s = self.settings
        return s.samples * (len(s.seeds) if s.search == "optuna" else self.grid_points)

    def trial_config(self, values: dict[str, Any], seed: int):
        """The trial's config: the base with the space's values, the seed, and where it runs (a GPU only
        when Ray gives it one: Ray shows a trial only its own GPUs, as cuda)."""
        s = self.settings
        fixed = {"train.seed": seed, "train.threads": s.cpus_per_trial,
                 "train.device": "cuda" if s.gpus_per_trial > 0 else "cpu",
                 **({"train.episodes": s.episodes} if s.episodes else {})}
        return with_values(self.base, values | fixed)


def _resolve_base(text: str, sweep_file: Path) -> Path:
    for candidate in (Path(text), sweep_file.parent / text):
        if candidate.is_file():
            return candidate.resolve()
    raise SweepError(f"{sweep_file}: base: no config file {text!r} in the working directory or beside the sweep file")


def _check_space(sweep_file: Path, base: dict, space: Any) -> dict[str, dict[str, list]]:
    if not isinstance(space, dict):
        raise SweepError(f"{sweep_file}: [space] must be a table of config keys")
    if not space:
        raise SweepError(f"{sweep_file}: [space] is empty; list at least one config key to vary, "
                         "or leave [space] out to run only the seeds")
    for key, spec in space.items():
        where = f"{sweep_file}: [space] {key}"
        if key == "train.seed":
            raise SweepError(f"{where}: seeds go in [sweep] seeds, not in the space")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise SweepError(f"{where}: expected one of {', '.join(f'{d} = [...]' for d in DISTRIBUTIONS)}, "
                             f"got {spec!r}")
        (kind, values), = spec.items()
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: {kind} needs a non-empty list, got {values!r}")
        if kind in ("uniform", "loguniform", "randint"):
            numbers = int if kind == "randint" else (int, float)
            if len(values) != 2 or not all(isinstance(v, numbers) and not isinstance(v, bool) for v in values) \
                    or not values[0] < values[1]:
                raise SweepError(f"{where}: {kind} needs [low, high] with low < high"
                                 f"{' (whole numbers)' if kind == 'randint' else ''}, got {values}")
            if kind == "loguniform" and values[0] <= 0:
                raise SweepError(f"{where}: loguniform needs low > 0, got {values[0]}")
        for value in values:  # a range's two ends stand for everything between: every check is an interval
            try:
                with_values(base, {key: value})
            except ConfigError as err:
                raise SweepError(f"{sweep_file}: [space] {err}") from None
    return space


def read_sweep(path: str | Path) -> Sweep:
    """The sweep file, checked: every mistake is a SweepError of one line naming the key."""
    path = Path(path)
    try:
        data = tomllib.loads(text := read_config_text(path))
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except ConfigError as err:
        raise SweepError(str(err)) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SweepError(f"{path}: not a readable TOML file ({err})") from None
    unknown = set(data) - {"base", "overrides", "space", "sweep"}
    if unknown:
        raise SweepError(f"{path}: unknown key {sorted(unknown)[0]!r} (known: base, overrides, space, sweep)")
    if not isinstance(data.get("base"), str):
        raise SweepError(f"{path}: base: expected the path of a config file, e.g. base = \"configs/reacher.toml\"")
    try:
        base = load_config(_resolve_base(data["base"], path))
    except ConfigError as err:
        raise SweepError(f"{path}: base: {err}") from None
    overrides = data.get("overrides", {})
    if not isinstance(overrides, dict):
        raise SweepError(f"{path}: [overrides] must be a table of config keys")
    try:
        base = with_values(base.to_dict(), overrides)
    except ConfigError as err:
        raise SweepError(f"{path}: [overrides] {err}") from None
    space = _check_space(path, base.to_dict(), data["space"]) if "space" in data else {}
    settings = SweepSettings()
    if not isinstance(data.get("sweep"), dict):
        raise SweepError(f"{path}: [sweep] is missing; it needs at least seeds = [...]")
    try:
        merge(settings, data["sweep"], "sweep.")
    except ConfigError as err:
        raise SweepError(f"{path}: {err}") from None
    _check_settings(path, settings, space, base.train.episodes)
    sweep = Sweep(path.stem, text, base.to_dict(), space, settings)
    if sweep.grid_points > RESUMABLE_GRID_POINTS:
        raise SweepError(f"{path}: {sweep.grid_points:,} grid points with the seeds, more than Ray Tune can resume "
                         f"({RESUMABLE_GRID_POINTS:,}); use fewer grid values, or draw them (choice, search = \"random\")")
    _check_combinations(path, sweep)
    return sweep


def _check_combinations(path: Path, sweep: Sweep) -> None:
    """Every combination of the values a trial can get (grid and choice values, the two ends of each
    range) makes a valid config, and every environment named can be made: a trial should never fail
    on its settings. Beyond CHECKED_COMBINATIONS combinations each key was checked alone (_check_space)."""
    keys = list(sweep.space)
    candidates = [next(iter(spec.values())) for spec in sweep.space.values()]
    combinations = itertools.product(*candidates) if math.prod(map(len, candidates)) <= CHECKED_COMBINATIONS \
        else [()]
    envs = {}
    for combination in combinations:
        values = dict(zip(keys, combination))
        try:
            config = sweep.trial_config(values, sweep.settings.seeds[0])
        except ConfigError as err:
            where = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
            raise SweepError(f"{path}: [space] the combination {where}: {err}") from None
        envs[json.dumps(dataclasses.asdict(config.env), sort_keys=True)] = config.env
    for env in envs.values():
        try:
            make_env(env, num_envs=1).close()
        except ConfigError as err:
            raise SweepError(f"{path}: {err}") from None


def _check_settings(path: Path, s: SweepSettings, space: dict, base_episodes: int | None) -> None:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise SweepError(f"{path}: sweep.{message}")
    require(bool(s.seeds), "seeds: missing; every configuration runs with each seed, e.g. seeds = [0, 1, 2]")
    require(all(0 <= seed < 2**32 for seed in s.seeds) and len(set(s.seeds)) == len(s.seeds),
            f"seeds: must be distinct whole numbers from 0 to {2**32 - 1}, got {s.seeds}")
    require(s.samples >= 1, f"samples: must be at least 1, got {s.samples}")
    require(s.search != "optuna" or bool(space), "search: optuna needs a [space] to search")
    grids = [k for k, spec in space.items() if "grid" in spec]
    require(s.search != "optuna" or not grids,
            f"search: optuna cannot search grid keys ({', '.join(grids)}); use choice = [...] instead")
    require(s.search != "optuna" or s.scheduler != "asha",
            "scheduler: asha would stop some seeds of an Optuna configuration and not others, and Optuna learns "
            "from the mean over seeds; use fifo with optuna")
    require(not (s.search == "grid" and s.samples > 1 and len(grids) == len(space)),
            f"samples: {s.samples} would run every grid point {s.samples} times alike; samples > 1 draws the "
            "choice/uniform keys, and this space has none")
    require(s.metric != "episodes_to_target" or s.mode == "min",
            'mode: episodes_to_target is better low: mode = "min"')
    require(s.scheduler != "asha" or s.metric != "episodes_to_target",
            "scheduler: asha compares trials while they run; rank by trailing_avg or score with it")
    episodes = s.episodes or base_episodes
    require(s.episodes is None or s.episodes >= 1, f"episodes: must be at least 1, got {s.episodes}")
    require(s.scheduler != "asha" or episodes is not None, "episodes: asha needs an episode budget")
    require(s.scheduler != "asha" or 1 <= s.grace_period <= (episodes or 0),
            f"grace_period: must be from 1 to the episode budget ({episodes}), got {s.grace_period}")
    require(s.reduction_factor > 1, f"reduction_factor: must be above 1, got {s.reduction_factor}")
    require(s.max_concurrent is None or s.max_concurrent >= 1, f"max_concurrent: must be at least 1, got {s.max_concurrent}")
    require(s.cpus_per_trial >= 1, f"cpus_per_trial: must be at least 1, got {s.cpus_per_trial}")
    require(s.gpus_per_trial >= 0, f"gpus_per_trial: must be >= 0, got {s.gpus_per_trial}")
    require(s.gpus_per_trial <= 1 or s.gpus_per_trial == int(s.gpus_per_trial),
            f"gpus_per_trial: above 1 it must be a whole number of GPUs, got {s.gpus_per_trial}")


# -- trials ------------------------------------------------------------------------------------------
def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value, separators=(",", ":")).strip('"')


def trial_name(trial_id: str, values: dict[str, Any], seed: int) -> str:
    """'00003-agent.tau=0.005-seed1': the trial's number, its settings and its seed, in characters every
    platform's file names accept (others become _)."""
    number = trial_id.rsplit("_", 1)[-1]
    settings = re.sub(r"[^A-Za-z0-9._=,+-]", "_", "-".join(f"{k}={_short(v)}" for k, v in values.items()))
    # A folder name has at most 255 bytes; the number alone keeps names apart.
    return "-".join(filter(None, [number, settings[:200], f"seed{seed}"]))


def _seed_and_values(sweep: Sweep, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    seed = params["seed"] if "seed" in params else sweep.settings.seeds[params["__trial_index__"]]
    return seed, {k: params[k] for k in sweep.space}


def _episodes_to_target(solved_at: int | None, budget: int | None, episode: int) -> int:
    """The solve episode; an unsolved run counts as one episode past its budget (or past where it is)."""
    return solved_at if solved_at is not None else (budget or episode) + 1


def record_failure(run_dir: Path, config, reason: str) -> None:
    """A trial that failed before its trainer could write anything leaves a record: its config (when it
    has one) and outcome.json saying failed, and why, in one line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None and not (run_dir / "config.json").exists():
        write_config_file(run_dir, config.to_dict())
    write_outcome(run_dir, {"status": "failed", "reason": reason, "episode": 0, "env_steps": 0, "solved_at": None,
                            "wall_seconds": 0.0, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def run_trial(params: dict[str, Any], sweep: dict[str, Any], folder: str) -> None:
    """One trial, inside a Ray worker: a new run, or the trial's own run resumed after a retry. A
    trial that cannot run as configured, or whose training fails (a non-finite loss), is recorded as
    failed and ends normally: a retry would fail the same way. Any other error (a node lost) is
    recorded too, then raised for Tune to retry."""
    import ray
    from ray import tune

    s = Sweep.from_dict(sweep)
    seed, values = _seed_and_values(s, params)
    name = trial_name(tune.get_context().get_trial_id(), values, seed)
    run_dir = Path(folder) / TRIALS / name
    node = ray.get_runtime_context().get_node_id()
    budget = s.episodes

    def report(episode: int, trailing_avg: float, score: float, solved_at: int | None, failed: str = "") -> None:
        tune.report({"episode": episode, "trailing_avg": trailing_avg, "score": score,
                     "episodes_to_target": _episodes_to_target(solved_at, budget, episode),
                     "run_dir": f"{TRIALS}/{name}",  # relative: a sweep folder may move before it resumes
                     "node": node, "failed": failed})

    # A retry after a node died: that node's lock on shared storage (NFS) lasts until its lease ends.
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while in_use(run_dir) and time.monotonic() < deadline:
        time.sleep(1)
    config = None
    try:
        config = s.trial_config(values, seed)
        trainer = Trainer.resume(run_dir) if is_run(run_dir) else Trainer(config, run_dir)
    except Exception as err:
        reason = f"{type(err).__name__}: {first_line(err)}"
        record_failure(run_dir, config, reason)
        if not isinstance(err, ConfigError):
            raise
        report(0, math.nan, math.nan, None, reason)
        return

    def report_unless_last(row: dict[str, float], checkpoint=None) -> None:
        # The last episode is reported once the run has closed its books (outcome.json): a scheduler
        # may stop a trial at any report, the last included (ASHA at its budget).
        if not trainer.done:
            report(int(row["episode"]), row["trailing_avg"], row["score"], trainer.solved_at)

    failed = ""
    if not trainer.done:
        try:
            trainer.train(progress=False, on_episode=report_unless_last)
        except TrainingError as err:  # outcome.json says so already
            failed = f"{type(err).__name__}: {first_line(err)}"
    else:  # finished before the sweep was killed: report where it ended, train nothing
        trainer.close()
    last = score_columns(trainer.scores, trainer.config.train.window) if trainer.scores else {}
    report(trainer.episode, last.get("trailing_avg", math.nan), last.get("score", math.nan), trainer.solved_at, failed)


# -- the sweep ---------------------------------------------------------------------------------------
def _ray():
    # Tune's newer console output ignores verbose=0; the older one honours it (we print our own lines).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A signal to the sweep's process group (timeout, systemd, Slurm) reaches Ray's own processes too:
    # without this, each prints a C++ stack dump as it ends.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import optuna  # noqa: F401  (the optuna search needs it; fail before anything starts)
        import ray
        from ray import tune
    except ImportError:
        raise SweepError(INSTALL) from None
    return ray, tune


def _param_space(sweep: Sweep, tune) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for key, spec in sweep.space.items():
        (kind, values), = spec.items()
        space[key] = {"grid": lambda v: tune.grid_search(v), "choice": lambda v: tune.choice(v),
                      "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
                      "randint": lambda v: tune.randint(v[0], v[1] + 1)}[kind](values)  # randint: high included
    if sweep.settings.search != "optuna":
        space["seed"] = tune.grid_search(sweep.settings.seeds)
    return space


def _search(sweep: Sweep):
    s = sweep.settings
    if s.search == "optuna":
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch
        # Optuna cannot take the seeds as a grid: Repeater runs each suggestion once per seed and hands
        # Optuna the mean over seeds.
        from ray.tune.search import ConcurrencyLimiter
        search = Repeater(OptunaSearch(metric=s.metric, mode=s.mode, seed=s.seeds[0]), repeat=len(s.seeds))
        if s.max_concurrent:
            search = ConcurrencyLimiter(search, s.max_concurrent)
        return search, s.samples * len(s.seeds)
    from ray.tune.search import BasicVariantGenerator
    # Random draws stay the same across the grid (the seeds among it): each draw runs with every seed.
    return BasicVariantGenerator(constant_grid_search=True, random_state=s.seeds[0],
                                 max_concurrent=s.max_concurrent or 0), s.samples


def _scheduler(sweep: Sweep):
    s = sweep.settings
    if s.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler
    return ASHAScheduler(time_attr="episode", max_t=sweep.episodes, grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor)


def _trial_memory(sweep: Sweep) -> int:
    """Bytes the hungriest trial needs: for each space key, the value that needs the most."""
    base = sweep.trial_config({}, sweep.settings.seeds[0])
    env = make_env(base.env)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    env.close()

    def need(values: dict[str, Any]) -> int:
        config = sweep.trial_config(values, sweep.settings.seeds[0])
        _, networks, buffer = memory_needed(config, obs_dim, act_dim)
        return networks + buffer + config.env.num_envs * ENV_BYTES + WORKER_BYTES
    hungriest = {key: max(next(iter(spec.values())), key=lambda v: need({key: v})) for key, spec in sweep.space.items()}
    return need(hungriest)


def _check_storage(ray, storage: Path) -> None:
    """Every node must see the sweep's folder: trials write their run directories there."""
    marker = storage / f".shared-{uuid.uuid4().hex}"
    marker.write_text("")
    try:
        @ray.remote(num_cpus=0)
        def sees(path: str) -> bool:
            return os.path.exists(path)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        nodes = [n for n in ray.nodes() if n["Alive"]]
        seen = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                        .remote(str(marker)) for n in nodes])
        blind = [n["NodeManagerAddress"] for n, ok in zip(nodes, seen) if not ok]
        if blind:
            raise SweepError(f"--storage: {storage} is not shared: the node(s) at {', '.join(blind)} cannot see it; "
                             "pass a folder every node mounts (a shared filesystem)")
    finally:
        marker.unlink(missing_ok=True)


def _start_ray(ray, address: str | None) -> None:
    import logging
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        # In-process, no dashboard; the object store is small because trials pass almost nothing.
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=256 * 2**20,
                 logging_level=logging.WARNING, log_to_driver=False)


def _cluster_address(address: str | None) -> str | None:
    return address or os.environ.get("RAY_ADDRESS") or None


def _sweep_parent(out: Path, storage: str | None, address: str | None) -> Path:
    """Where the sweep's folder goes: --out, or on a cluster the shared --storage."""
    if address:
        if not storage:
            raise SweepError("--storage: a sweep on a cluster needs a folder every node can reach (a shared "
                             "filesystem mounted at the same path), e.g. --storage /shared/sweeps")
        if "://" in storage:
            raise SweepError(f"--storage: {storage} is a URL; trials write ordinary run directories, so mount the "
                             "storage as a shared folder (e.g. with s3fs or gcsfuse) and pass its path")
    return Path(storage or out).resolve()  # trials do not run in this directory: resolve before Ray starts


def _new_folder(sweep: Sweep, parent: Path) -> Path:
    """A new folder `parent/<sweep>-<time>[-k]` holding the sweep file as written and as checked."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        folder = parent / (f"{sweep.name}-{stamp}" if k == 1 else f"{sweep.name}-{stamp}-{k}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        (folder / SWEEP_FILE).write_text(sweep.text)
        (folder / SWEEP_STATE).write_text(json.dumps(sweep.to_dict(), indent=2))
        return folder
    raise SweepError(f"{parent}: cannot create a new sweep folder")


def start(sweep_file: str | Path, out: Path, address: str | None = None, storage: str | None = None) -> Path:
    """Check the sweep file and the machine (or cluster), then run it in a new folder; returns the
    folder. Nothing is written before every check has passed."""
    sweep = read_sweep(sweep_file)
    address = _cluster_address(address)
    parent = _sweep_parent(out, storage, address)
    cores = os.cpu_count() or 1
    if not address and sweep.settings.cpus_per_trial > cores:
        raise SweepError(f"{sweep_file}: sweep.cpus_per_trial: {sweep.settings.cpus_per_trial}, more than this "
                         f"machine's {cores} CPUs, so no trial could start")
    ray, tune = _ray()
    return _run(sweep, None, ray, tune, address, parent)


def resume(folder: Path, sweep_file: str | Path | None = None, address: str | None = None) -> Path:
    """Continue an interrupted sweep: finished trials stay done, errored ones are retried."""
    folder = folder.resolve()
    try:
        saved = Sweep.from_dict(json.loads((folder / SWEEP_STATE).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise SweepError(f"{folder}: not a sweep folder ({SWEEP_STATE}: {err})") from None
    if sweep_file is not None:  # given again: it must still describe this sweep
        current = read_sweep(sweep_file)
        changed = [k for k in ("space", "settings") if current.search_spec()[k] != saved.search_spec()[k]]
        if changed:
            raise SweepError(f"{sweep_file}: the sweep's {' and '.join(changed)} changed since it started; restore "
                             f"the file as it was ({folder / SWEEP_FILE}) or start a new sweep")
    ray, tune = _ray()
    return _run(saved, folder, ray, tune, _cluster_address(address))


def _completed(folder: Path) -> set[str]:
    """Tune's ids of the trials that ended (by their budget, their target, a failure recorded, or the
    scheduler), as the Progress callback lists them."""
    return set((folder / COMPLETED).read_text().split()) if (folder / COMPLETED).exists() else set()


def _interrupted(folder: Path, unfinished: int, trials: int) -> str:
    return f"sweep interrupted: {unfinished} of {trials} trial(s) unfinished; continue with: ddpg sweep --resume {folder}"


@contextlib.contextmanager
def _sigterm_stops(folder: Path, trials: int):
    """SIGTERM (what timeout, systemd and Slurm send, often to the whole process group) ends the sweep as
    Ctrl-C does, saying what is unfinished and how to go on. It ends it at once: Ray's own processes
    got the signal too, and any call into Ray would wait for them in vain. What was done is kept, as
    after a kill: Tune's saved state and each trial's checkpoints."""
    def stop(signum, frame):
        print(_interrupted(folder, trials - len(_completed(folder)), trials), flush=True)
        os._exit(128 + signum)
    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(sweep: Sweep, folder: Path | None, ray, tune, address: str | None, parent: Path | None = None) -> Path:
    """Run the sweep in `folder` (resumed), or in a new folder under `parent` once Ray is up and the
    plan fits the machine or cluster."""
    global driving
    s = sweep.settings
    restore = folder is not None
    lock = RunLock(folder) if restore else None  # one process drives a sweep
    try:
        memory = _trial_memory(sweep)
        _start_ray(ray, address)
        try:
            _print_plan(ray, sweep, memory)
            if not restore:
                folder = _new_folder(sweep, parent)
                lock = RunLock(folder)
            driving = folder
            if address:
                _check_storage(ray, folder)
            trainable = tune.with_resources(
                tune.with_parameters(run_trial, sweep=sweep.to_dict(), folder=str(folder)),
                {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial, "memory": memory})
            if restore:
                tuner = tune.Tuner.restore(str(folder / "ray"), trainable=trainable, resume_unfinished=True,
                                           resume_errored=True)
            else:
                search, samples = _search(sweep)

                def name(trial) -> str:
                    seed, values = _seed_and_values(sweep, trial.config)
                    return trial_name(trial.trial_id, values, seed)
                tuner = tune.Tuner(
                    trainable, param_space=_param_space(sweep, tune),
                    tune_config=tune.TuneConfig(metric=s.metric, mode=s.mode, search_alg=search,
                                                scheduler=_scheduler(sweep), num_samples=samples,
                                                trial_name_creator=name,
                                                trial_dirname_creator=name,
                                                # a trial starting in a worker that already imported
                                                # torch and the env skips seconds of start-up
                                                reuse_actors=True),
                    run_config=tune.RunConfig(name="ray", storage_path=str(folder), verbose=0,
                                              failure_config=tune.FailureConfig(max_failures=3),
                                              callbacks=[_progress(tune)]))
            with _sigterm_stops(folder, sweep.trials):
                results = tuner.fit()
        finally:
            ray.shutdown()
        unfinished = _close_books(results, _completed(folder), folder, sweep.trials)
        if unfinished:
            print(_interrupted(folder, unfinished, sweep.trials))
        else:
            _summarize(sweep, folder)
    finally:
        if lock is not None:
            lock.release()
    return folder


def _print_plan(ray, sweep: Sweep, memory: int) -> None:
    s = sweep.settings
    resources = ray.cluster_resources()
    cpus, available, gpus = resources.get("CPU", 0), resources.get("memory", 0), resources.get("GPU", 0)
    at_once = int(min(cpus // s.cpus_per_trial, available // memory,
                      gpus // s.gpus_per_trial if s.gpus_per_trial else math.inf))
    if s.max_concurrent:
        at_once = min(at_once, s.max_concurrent)
    if at_once < 1:
        raise SweepError(f"sweep: a trial needs {s.cpus_per_trial} CPU(s), {s.gpus_per_trial:g} GPU(s) and "
                         f"{memory / 2**30:.1f} GiB; the cluster has {cpus:g} CPUs, {gpus:g} GPUs and "
                         f"{available / 2**30:.1f} GiB for tasks")
    print(f"sweep {sweep.name}: {sweep.trials} trial(s), up to {at_once} at a time ({cpus:g} CPUs, {available / 2**30:.1f} GiB; "
          f"each trial takes {s.cpus_per_trial} CPU and {memory / 2**30:.2f} GiB with its replay buffer)", flush=True)


def _progress(tune):
    class Progress(tune.Callback):
        """One line per trial that ends; the trials that ended (by their budget, their target, a failure
        recorded, or the scheduler) are listed in the sweep's folder, so that a resumed sweep knows them
        too. A resumed sweep runs Tune's own pickled copy of this callback, and its folder may have
        moved meanwhile (Tune's trials made after a restore even keep the old path): the folder is the
        one this process drives, read from the live module."""

        def on_trial_complete(self, iteration, trials, trial, **info):
            from ddpg import sweep
            with open(sweep.driving / COMPLETED, "a") as f:
                f.write(f"{trial.trial_id}\n")
            r = trial.last_result or {}
            status = f"failed: {r['failed']}" if r.get("failed") else \
                f"episode {r.get('episode')}, trailing average {r.get('trailing_avg', math.nan):.2f}"
            print(f"  {trial} done: {status}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"  {trial} failed (retried up to 3 times): {trial.error_file}", flush=True)
    return Progress()


def _close_books(results, completed: set[str], folder: Path, trials: int) -> int:
    """Trials the scheduler stopped end without an outcome of their own (or with the exception that
    stopped them): say so in their run directories, so that comparisons do not count them as failed.
    Returns how many of the sweep's trials are unfinished (Ctrl-C, or trials never started): all but
    those that ended or errored after their retries."""
    errored = 0
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None:
            errored += 1
            continue
        if "run_dir" not in metrics or metrics.get("trial_id") not in completed:
            continue
        run_dir = folder / metrics["run_dir"]
        outcome = read_outcome(run_dir) or {}
        if outcome.get("status") in ("solved", "finished", "early_stopped") or metrics.get("failed"):
            continue
        outcome.pop("reason", None)  # the exception that stopped it is the scheduler's doing
        write_outcome(run_dir, outcome | {"status": "early_stopped", "episode": metrics["episode"]})
    return trials - len(completed) - errored


def _summarize(sweep: Sweep, folder: Path) -> None:
    """The ranked table, summary.csv, compare.png and best.toml (one per environment when the sweep
    spans several); a line for the failed trials; SweepError when no trial succeeded."""
    from .compare import best_rows, format_table, group_runs, load_runs, plot_comparison, summarize, write_summary_csv
    s = sweep.settings
    runs = load_runs([folder / TRIALS])
    groups = group_runs(runs)
    rows = summarize(groups, s.metric, s.mode)
    print(format_table(rows))
    write_summary_csv(rows, folder / "summary.csv")
    if any(r.metrics is not None for r in runs):
        plot_comparison(groups, folder / "compare.png")
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        reasons = sorted({(r.outcome or {}).get("reason", "ended without a word (killed?)") for r in failed})
        print(f"{len(failed)} of {len(runs)} trial(s) failed: {'; '.join(reasons[:3])}"
              + (f"; and {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else "")
              + f" (each trial's outcome.json in {folder / TRIALS})")
    best = best_rows(rows)
    for row in best:
        name = "best.toml" if len(best) == 1 else f"best-{re.sub(r'[^a-z0-9.-]', '-', row['env'].lower())}.toml"
        write_best(sweep, next(g for g in groups if g.name == row["group"]), folder / name)
        print(f"{name}: ddpg train --config {folder / name}")
    if not best:
        print("no configuration ran to its end, so there is no best.toml")
    print(f"summary.csv and compare.png in {folder}")
    if not any(r.status in ("solved", "finished", "early_stopped") for r in runs):
        raise SweepError(f"sweep: none of its {len(runs)} trial(s) succeeded; see {folder}")


def write_best(sweep: Sweep, group, path: Path) -> None:
    """The best configuration as a config file `ddpg train --config` takes (the seed left to choose)."""
    import tomli_w

    def toml_ready(value):  # TOML has no null: the config files spell it "none"
        return {k: toml_ready(v) for k, v in value.items()} if isinstance(value, dict) else \
            "none" if value is None else value
    config = toml_ready(group.runs[0].config.to_dict())
    del config["train"]["seed"]
    for key in ("episodes", "steps", "threads", "device"):  # the sweep's budget and placement, not the setting's
        config["train"][key] = toml_ready(sweep.base["train"][key])
    header = (f"# The best configuration of sweep {sweep.name} by {sweep.settings.metric} ({sweep.settings.mode}): "
              f"{group.name}\n")
    path.write_text(header + tomli_w.dumps(config))
