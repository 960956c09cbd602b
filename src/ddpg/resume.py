"""What resuming a run may change, and where it starts from: the newest checkpoint that verifies (or
episode 0 when the run died before its first), with the user's overrides checked against the run's
config. Every check passes before anything in the run directory is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError, flatten, load_config
from .checkpoint import newest_checkpoint
from .rundir import RunDirError, RunLock, checkpoint_files, read_config_file

# A resumed run keeps these: they shape the networks, the buffer, the environment or the seeds.
FIXED_ON_RESUME = ("env.id", "env.num_envs", "env.kwargs", "agent.actor_hidden", "agent.critic_hidden",
                   "agent.critic_action_layer", "agent.batch_norm", "agent.layer_norm", "agent.activation",
                   "agent.twin_critics", "agent.buffer_size", "agent.n_step", "replay.prioritized", "train.seed")


def config_changes(old: Config, new: Config) -> dict[str, tuple]:
    """{key: (old, new)} for every field that differs."""
    a, b = flatten(old.to_dict()), flatten(new.to_dict())
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


@dataclass
class Plan:
    """Where a resumed run starts: its config (the saved one with the overrides), the checkpoint and
    its payload (None: from episode 0), what changed, and the run directory's lock, held."""
    config: Config
    checkpoint: Path | None
    payload: dict | None
    changes: dict[str, tuple]
    lock: RunLock

    def describe(self, run_dir: Path) -> str:
        where = (f"from {self.checkpoint.name} (episode {self.payload['episode']})" if self.checkpoint
                 else "from episode 0 (no checkpoint yet)")
        return f"resuming {run_dir} {where}" + "".join(f"; {k}: {a!r} -> {b!r}" for k, (a, b) in self.changes.items())

    def set_aside_damaged(self, run_dir: Path) -> None:
        """Checkpoints newer than the one resumed were skipped as damaged: kept, renamed, never picked again."""
        for newer in checkpoint_files(run_dir):
            if self.checkpoint is not None and newer.name > self.checkpoint.name:
                newer.rename(newer.with_name(newer.name + ".damaged"))


def plan(run_dir: Path, overrides: list[str] = ()) -> Plan:
    """Own the run directory and decide where its run resumes; RunDirError or ConfigError (lock released)
    when it cannot, naming why."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not checkpoint_files(run_dir):  # a run killed before its first checkpoint starts over
        try:
            saved = load_config(base=read_config_file(run_dir))
        except (RunDirError, ConfigError) as err:
            reason = err if isinstance(err, RunDirError) else f"{run_dir / 'config.json'}: {err}"
            raise RunDirError(f"{run_dir}: nothing to resume: no checkpoint, and {reason}") from None
    lock = RunLock(run_dir)
    try:
        path = payload = None
        if found := newest_checkpoint(run_dir, rows=True):
            path, payload, notes = found
            for note in notes:
                print(f"resume: {note}")
            saved = load_config(base=payload["config"])
        config = load_config(base=saved.to_dict(), overrides=overrides)
        changes = config_changes(saved, config)
        # n-step returns in the buffer were summed with the run's gamma.
        fixed = FIXED_ON_RESUME + (("agent.gamma",) if config.agent.n_step > 1 else ())
        for key in fixed:
            if key in changes:
                raise ConfigError(f"{key}: cannot change when resuming (the run has {changes[key][0]!r}, "
                                  f"asked for {changes[key][1]!r}); start a new run for that")
        episodes_done = payload["episode"] if payload else 0
        if config.train.episodes is not None and config.train.episodes < episodes_done:
            raise ConfigError(f"train.episodes: the run has done {episodes_done} episodes already; "
                              f"ask for more to extend it, got {config.train.episodes}")
        steps_done = payload["env_steps"] if payload else 0
        if config.train.steps is not None and config.train.steps < steps_done:
            raise ConfigError(f"train.steps: the run has done {steps_done} environment steps already; "
                              f"ask for more to extend it, got {config.train.steps}")
    except BaseException:
        lock.release()
        raise
    return Plan(config, path, payload, changes, lock)
