"""The learner's device: chosen, refused in one line when absent, everything that learns on it, nothing
read back while updates run, checkpoints the same whatever device wrote them. The tests marked `cuda`
need an NVIDIA GPU and are skipped without one (benchmarks/gpu_check.py runs them)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ddpg.agent import DDPG
from ddpg.checkpoint import agent_from_checkpoint, load_checkpoint
from ddpg.config import load_config
from ddpg.envs.factory import make_env
from ddpg.replay import PrioritizedReplayBuffer, ReplayBuffer
from ddpg.resources import device
from ddpg.trainer import Trainer
from test_agent import Reference, _batches, _every_tensor

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
REACHER = ["env.num_envs=2", "agent.actor_hidden=[16, 16]", "agent.critic_hidden=[16, 16]", "agent.batch_size=32",
           "agent.buffer_size=4000", "agent.learn_every=50", "agent.updates_per_learn=3", "train.episodes=2",
           "train.checkpoint_every=1", "train.tensorboard=false", "train.target_score=none"]


def test_auto_is_the_gpu_where_there_is_one_and_an_absent_device_is_refused_or_noted(capsys):
    assert device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert device("cpu") == torch.device("cpu")
    count = torch.cuda.device_count()
    with pytest.raises(Exception, match=f"train.device: cuda:{count} asked for, but"):
        device(f"cuda:{count}")
    assert device(f"cuda:{count}", strict=False) == torch.device("cpu")  # a saved config, from elsewhere
    assert f"train.device = cuda:{count} (as the run was made)" in capsys.readouterr().err


def test_nothing_is_read_back_to_python_while_updates_run(tmp_path, monkeypatch):
    """On a GPU each read would wait for the update to finish: losses and Q are read once an episode."""
    updating = []

    def forbidden(name):
        real = getattr(torch.Tensor, name)

        def guard(self, *args, **kwargs):
            assert not updating, f"Tensor.{name} while updates run"
            return real(self, *args, **kwargs)
        return guard
    for name in ("item", "__float__", "numpy", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, forbidden(name))
    learn = Trainer._learn

    def watched(self, *args):
        updating.append(True)
        try:
            learn(self, *args)
        finally:
            updating.clear()
    monkeypatch.setattr(Trainer, "_learn", watched)
    trainer = Trainer(load_config(None, REACHER), tmp_path / "run")
    trainer.train(progress=False)
    assert trainer.agent.updates == 2 * 1000 // 50 * 3
    assert np.isfinite(trainer.scores).all()


def test_checkpoints_hold_cpu_tensors_and_load_onto_the_readers_device(tmp_path):
    trainer = Trainer(load_config(None, REACHER), tmp_path / "run")
    trainer.train(progress=False)
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "episode_000002.pt")
    assert payload["device"] == str(trainer.device)

    def devices(value):
        if isinstance(value, torch.Tensor):
            yield value.device.type
        elif isinstance(value, dict):
            for v in value.values():
                yield from devices(v)
    assert set(devices(payload)) == {"cpu"}
    agent = agent_from_checkpoint(payload, make_env(trainer.config.env), tmp_path, device="cpu")
    assert all(p.device.type == "cpu" for p in agent.actor.parameters())


def test_a_run_made_on_a_gpu_resumes_on_the_cpu_with_a_note(tmp_path, capsys):
    """As a checkpoint written on a GPU machine reads on a laptop: its config says cuda, its payload too."""
    from ddpg.checkpoint import save_checkpoint
    run = tmp_path / "run"
    Trainer(load_config(None, [*REACHER, "train.episodes=1"]), run).train(progress=False)
    path = run / "checkpoints" / "episode_000001.pt"
    payload = load_checkpoint(path)
    payload["config"]["train"]["device"], payload["device"] = "cuda", "cuda:0"
    gpu_generator = torch.Generator(device="cuda").get_state() if torch.cuda.is_available() else \
        torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)  # a CUDA sampler's 16 bytes
    payload["buffer"]["generator"] = gpu_generator
    save_checkpoint(payload, path)
    (run / "config.json").unlink()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the run would resume on it")
    resumed = Trainer.resume(run, ["train.episodes=2"])
    err = capsys.readouterr()
    assert "train.device = cuda (as the run was made), but torch sees no CUDA device" in err.err
    assert "resume: made on cuda, continued on cpu" in err.out
    resumed.train(progress=False)
    assert resumed.episode == 2


@pytest.mark.parametrize("prioritized", [False, True])
def test_the_buffer_packs_rows_and_samples_on_its_device(prioritized):
    kind = PrioritizedReplayBuffer if prioritized else ReplayBuffer
    buffer = kind(100, 3, 2, seed=1, device="cpu")
    buffer.add(np.arange(12.0).reshape(4, 3), np.ones((4, 2)), np.arange(4.0), -np.arange(12.0).reshape(4, 3),
               [0, 0, 1, 0])
    assert buffer.obs[:4].tolist() == np.arange(12.0).reshape(4, 3).tolist()
    assert buffer.next_obs[:4].tolist() == (-np.arange(12.0).reshape(4, 3)).tolist()
    assert buffer.rewards[:4].tolist() == [0, 1, 2, 3] and buffer.terminated[:4].tolist() == [0, 0, 1, 0]
    batch = buffer.sample(8)
    assert all(t.device.type == "cpu" for t in batch)
    assert set(batch.rewards.tolist()) <= {0.0, 1.0, 2.0, 3.0}


# -- on a GPU ------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "cuda-graph"])
@pytest.mark.parametrize("batch_norm", [False, True], ids=["layer-norm", "batch-norm"])
def test_the_update_on_a_gpu_matches_the_plain_reference(batch_norm, compile):
    torch.manual_seed(0)
    from ddpg.config import AgentConfig
    config = AgentConfig(actor_hidden=[16, 16], critic_hidden=[16, 16], batch_norm=batch_norm, layer_norm=not batch_norm,
                         critic_grad_clip=1e-3, actor_grad_clip=1e-4, actor_weight_decay=0.01, compile=compile)
    agent = DDPG(5, np.full(2, -1.0), np.ones(2), config, device="cuda")
    reference = Reference(copy.deepcopy(agent))
    for batch in _batches(5):
        agent.learn(batch._replace(**{k: v.cuda() for k, v in batch._asdict().items()}))
        reference.learn(batch._replace(**{k: v.cuda() for k, v in batch._asdict().items()}))
    mine, expected = _every_tensor(agent), _every_tensor(reference)
    for key, value in expected.items():
        torch.testing.assert_close(mine[key].cuda(), value.cuda(), rtol=1e-4, atol=1e-5, msg=key)
    assert mine["actor.body.0.weight"].device.type == "cpu"  # the state of a GPU agent is saved from the CPU


@pytest.mark.cuda
@gpu
def test_a_run_on_a_gpu_keeps_everything_that_learns_there_and_evaluates_on_the_cpu(tmp_path):
    trainer = Trainer(load_config(None, [*REACHER, "train.device=cuda"]), tmp_path / "run")
    assert trainer.buffer.storage.device.type == "cuda" and trainer.buffer.generator.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in trainer.agent.critic_target.parameters())
    trainer.train(progress=False)
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "episode_000002.pt")
    agent = agent_from_checkpoint(payload, make_env(trainer.config.env), tmp_path, device="cpu")
    obs = np.random.default_rng(0).standard_normal((5, 33)).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs), trainer.agent.act(obs), rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@gpu
def test_pendulum_learns_on_a_gpu(tmp_path):
    config = load_config("configs/pendulum.toml", ["train.device=cuda", "agent.warmup_steps=1000", "train.episodes=30",
                                                   "train.target_score=none", "train.tensorboard=false"])
    trainer = Trainer(config, tmp_path / "run")
    trainer.train(progress=False)
    assert np.mean(trainer.mean_scores[-5:]) > -400
