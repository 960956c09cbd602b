"""DDPG's known fixes, options of its one update: twin critics, target policy smoothing, a delayed actor,
n-step returns and a Huber loss, each against values computed by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ddpg.agent import DDPG, critic_losses, smoothed, target_noise, td_target
from ddpg.config import AgentConfig, ConfigError, load_config
from ddpg.replay import Batch, NStepReturns
from test_agent import _batches


def agent(seed: int = 0, **options) -> DDPG:
    torch.manual_seed(seed)
    config = AgentConfig(**{"actor_hidden": [16, 16], "critic_hidden": [16, 16], "critic_grad_clip": 0.0, **options})
    return DDPG(5, np.full(2, -1.0), np.ones(2), config)


def batch(n: int = 2, rewards=(1.0, 2.0)) -> Batch:
    g = torch.Generator().manual_seed(3)
    return Batch(torch.randn(n, 5, generator=g), torch.rand(n, 2, generator=g) * 2 - 1, torch.tensor(rewards),
                 torch.randn(n, 5, generator=g), torch.zeros(n), torch.ones(n), torch.ones(n), torch.arange(n))


def test_the_twin_target_is_the_elementwise_minimum_of_the_target_critics(monkeypatch):
    a = agent(gamma=0.5, twin_critics=True)
    monkeypatch.setattr(a.critic_target, "forward", lambda obs, action: torch.tensor([5.0, 1.0]))
    monkeypatch.setattr(a.critic2_target, "forward", lambda obs, action: torch.tensor([3.0, 4.0]))
    b = batch()
    with torch.no_grad():
        q = a.critic(b.obs, b.actions)
    out = a.learn(b)
    y = torch.tensor([1.0 + 0.5 * 3.0, 2.0 + 0.5 * 1.0])  # the smaller target value, sample by sample
    torch.testing.assert_close(out["td_error"], (y - q).abs())


def test_the_actors_gradient_comes_through_the_first_critic_only_and_the_second_critic_learns():
    a, b = agent(twin_critics=True), agent(twin_critics=True)
    with torch.no_grad():
        for p in b.critic2.parameters():
            p.add_(torch.randn_like(p))  # another second critic: the actor must not care
    second = copy.deepcopy(b.critic2.state_dict())
    x = _batches(1)[0]  # one update: later ones differ through the second critic's target, as they should
    a.learn(x)
    b.learn(x)
    for p, q in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(p, q)
    assert all(not torch.equal(v, b.critic2.state_dict()[k]) for k, v in second.items() if v.is_floating_point())
    assert "critic2_optimizer" in a.state_dict() and a.state_dict()["critic2"].keys() == a.state_dict()["critic"].keys()


def test_target_noise_is_clipped_as_configured_and_kept_in_bounds():
    g = torch.Generator().manual_seed(0)
    noise = target_noise((10_000,), sigma=5.0, clip=0.5, generator=g)
    assert noise.abs().max() == 0.5 and (noise.abs() == 0.5).float().mean() > 0.8  # sigma 5: nearly all clipped
    small = target_noise((10_000,), sigma=0.1, clip=0.5, generator=g)
    assert small.std() == pytest.approx(0.1, rel=0.05) and small.abs().max() < 0.5
    # In units of half the range: bounds [0, 10] (centre 5, half range 5): 9 + 0.5 * 5 = 11.5, kept at 10.
    torch.testing.assert_close(smoothed(torch.tensor([9.0, 2.0]), torch.tensor([0.5, -0.2]), torch.tensor(5.0),
                                        torch.tensor(5.0)), torch.tensor([10.0, 1.0]))


def test_target_noise_enters_the_target_and_is_absent_when_0(monkeypatch):
    b = batch()
    for sigma in (0.0, 0.3):
        a = agent(gamma=0.5, target_noise=sigma, target_noise_clip=0.4)
        assert (a.generator is None) == (sigma == 0)
        monkeypatch.setattr(a.actor_target, "forward", lambda obs: torch.full((2, 2), 0.9))
        monkeypatch.setattr(a.critic_target, "forward", lambda obs, action: action.sum(-1))  # Q' = a1 + a2
        drawn = torch.zeros(2, 2) if a.generator is None else \
            target_noise((2, 2), sigma, 0.4, copy.deepcopy(a.generator))
        with torch.no_grad():
            q = a.critic(b.obs, b.actions)
        out = a.learn(b)
        y = b.rewards + 0.5 * torch.clamp(0.9 + drawn, -1.0, 1.0).sum(-1)  # half range 1: noise as drawn
        torch.testing.assert_close(out["td_error"], (y - q).abs())


def test_with_a_policy_delay_the_actor_and_every_target_change_on_every_dth_update_only():
    a = agent(policy_delay=3, twin_critics=True)
    changed = []
    for update, x in enumerate(_batches(6), start=1):
        before = {name: copy.deepcopy(getattr(a, name).state_dict()) for name in
                  ("actor", "actor_target", "critic_target", "critic2_target", "critic", "critic2")}
        a.learn(x)
        changed.append({name: not all(torch.equal(v, getattr(a, name).state_dict()[k]) for k, v in state.items())
                        for name, state in before.items()})
    for update, moved in enumerate(changed, start=1):
        delayed = update % 3 == 0
        assert moved == {"actor": delayed, "actor_target": delayed, "critic_target": delayed, "critic2_target": delayed,
                         "critic": True, "critic2": True}, update


def test_huber_and_squared_losses_by_hand():
    td = torch.tensor([0.5, -2.0, 0.0])
    torch.testing.assert_close(critic_losses(td, "mse"), torch.tensor([0.25, 4.0, 0.0]))
    torch.testing.assert_close(critic_losses(td, "huber"), torch.tensor([0.125, 1.5, 0.0]))  # 0.5 x^2; |x| - 0.5


def test_the_td_target_of_an_n_step_return_by_hand():
    y = td_target(torch.tensor([2.0, 27.5, 30.0]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([10.0, 10.0, 10.0]),
                  gamma=0.5, horizon=torch.tensor([2.0, 3.0, 1.0]))
    torch.testing.assert_close(y, torch.tensor([2.0, 27.5 + 0.125 * 10.0, 30.0 + 0.5 * 10.0]))


def test_n_step_returns_of_three_arms_by_hand():
    """gamma 0.5, n = 3. Arm 0 terminates at its second step, arm 1 is cut by a time limit at its third,
    arm 2 runs five steps and is cut at its fifth. Observations are (arm, step); the true last one of
    each arm is (arm, its last step + 1)."""
    windows = NStepReturns(3, 0.5, 3)
    steps = [  # (arms still in their episode, their rewards, terminated, truncated)
        ([0, 1, 2], [1, 10, 100], [0, 0, 0], [0, 0, 0]),
        ([0, 1, 2], [2, 20, 200], [1, 0, 0], [0, 0, 0]),
        ([1, 2], [30, 300], [0, 0], [1, 0]),
        ([2], [400], [0], [0]),
        ([2], [500], [0], [1]),
    ]
    got = []
    for t, (arms, rewards, terminated, truncated) in enumerate(steps):
        obs = np.array([[arm, t] for arm in arms], float)
        next_obs = obs + [0, 1]
        got += [(tuple(o), r, tuple(n), term, k) for o, _, r, n, term, k in
                windows.push(np.array(arms), obs, np.zeros((len(arms), 1)), np.array(rewards, float), next_obs,
                             np.array(terminated, bool), np.array(truncated, bool))]
    assert got == [
        ((0, 0), 1 + 0.5 * 2, (0, 2), 1.0, 2), ((0, 1), 2, (0, 2), 1.0, 1),  # the termination masks the bootstrap
        ((1, 0), 10 + 0.5 * 20 + 0.25 * 30, (1, 3), 0.0, 3), ((1, 1), 20 + 0.5 * 30, (1, 3), 0.0, 2),
        ((1, 2), 30, (1, 3), 0.0, 1),  # the cut keeps it, from the true last observation
        ((2, 0), 100 + 0.5 * 200 + 0.25 * 300, (2, 3), 0.0, 3),
        ((2, 1), 200 + 0.5 * 300 + 0.25 * 400, (2, 4), 0.0, 3),
        ((2, 2), 300 + 0.5 * 400 + 0.25 * 500, (2, 5), 0.0, 3), ((2, 3), 400 + 0.5 * 500, (2, 5), 0.0, 2),
        ((2, 4), 500, (2, 5), 0.0, 1),
    ]
    assert all(not w for w in windows.windows)  # every episode ended: nothing pending


def test_the_fixes_settings_are_checked():
    for text, message in (("agent.policy_delay=0", "agent.policy_delay: must be at least 1"),
                          ("agent.n_step=0", "agent.n_step: must be at least 1"),
                          ("agent.target_noise=-1", "agent.target_noise: must be >= 0"),
                          ("agent.critic_loss=l1", "agent.critic_loss: must be one of 'mse', 'huber'")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [text])


def test_a_run_with_n_step_returns_keeps_its_gamma_when_resumed(tmp_path):
    from ddpg.trainer import Trainer
    from runs import PENDULUM
    Trainer(load_config(None, [*PENDULUM, "agent.n_step=3", "train.episodes=1"]), tmp_path / "run").train(progress=False)
    with pytest.raises(ConfigError, match=r"agent.gamma: cannot change when resuming"):
        Trainer.resume(tmp_path / "run", ["agent.gamma=0.9", "train.episodes=2"])
