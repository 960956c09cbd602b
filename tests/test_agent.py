"""DDPG's math against hand-computed values, and the update's gradient and target discipline."""

import copy
import math

import numpy as np
import pytest
import torch

from ddpg.agent import DDPG, SoftUpdate, td_target, trust_checked_vector_isa
from ddpg.config import AgentConfig, NoiseConfig, load_config
from ddpg.networks import Actor, Critic
from ddpg.noise import Noise, noise_scale, ou_step
from ddpg.replay import Batch, ReplayBuffer
from ddpg.resources import torch_threads
from ddpg.scores import learning_effort, solved_episode, trailing_average


def test_td_target_by_hand():
    y = td_target(torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 1.0, 0.0]),
                  torch.tensor([2.0, 3.0, 10.0]), gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([2.8, 0.5, 8.0]))
    assert td_target(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([5.0]), gamma=0.0).item() == 1.0


def test_soft_update_by_hand_including_batch_norm_statistics():
    local, target = Critic(3, 1, [4, 4]), Critic(3, 1, [4, 4])
    with torch.no_grad():
        for p in local.state_dict().values():
            p.fill_(1) if p.is_floating_point() else p.fill_(7)
        for p in target.state_dict().values():
            p.fill_(0) if p.is_floating_point() else p.fill_(0)
    SoftUpdate((target, local))(0.1)
    for name, value in target.state_dict().items():
        expected = 0.1 if value.is_floating_point() else 7
        assert torch.all(value == torch.tensor(expected, dtype=value.dtype)), name
    assert "state_layer.0.running_mean" in target.state_dict()


def test_actor_scales_tanh_to_each_action_dimension():
    actor = Actor(2, torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 10.0]), [8], batch_norm=False)
    with torch.no_grad():
        actor.body[-2].bias.copy_(torch.tensor([100.0, -100.0]))  # saturate tanh: +1, -1
    out = actor(torch.zeros(1, 2))
    torch.testing.assert_close(out, torch.tensor([[2.0, 0.0]]))


def test_ou_step_by_hand():
    x = ou_step(np.array([1.0, -2.0]), theta=0.15, sigma=0.2, normal=np.array([0.5, -1.0]))
    np.testing.assert_allclose(x, [0.95, -1.9])


def test_ou_statistics_and_per_arm_independence():
    noise = Noise(NoiseConfig(kind="ou", sigma=0.2, theta=0.15), num_envs=20, act_dim=4, seed=0)
    samples = np.stack([noise.sample() for _ in range(20_000)])[1000:]  # (T, 20, 4)
    stationary_std = 0.2 / np.sqrt(1 - 0.85 ** 2)  # Var = sigma^2 / (1 - (1 - theta)^2)
    assert samples.std() == pytest.approx(stationary_std, rel=0.05)
    assert abs(samples.mean()) < 0.03
    lag1 = np.corrcoef(samples[1:, 0, 0], samples[:-1, 0, 0])[0, 1]
    assert lag1 == pytest.approx(0.85, abs=0.02)  # the process's memory: 1 - theta
    arms = samples[:, :, 0].T  # one row per arm
    between = np.corrcoef(arms)[np.triu_indices(20, 1)]
    assert np.abs(between).max() < 0.2  # arms do not share one draw (the original's bug)


def test_gaussian_noise_statistics():
    noise = Noise(NoiseConfig(kind="gaussian", sigma=0.3), num_envs=5, act_dim=2, seed=1)
    samples = np.stack([noise.sample() for _ in range(20_000)])
    assert samples.std() == pytest.approx(0.3, rel=0.03)
    assert abs(np.corrcoef(samples[1:, 0, 0], samples[:-1, 0, 0])[0, 1]) < 0.03


def test_noise_schedules_by_hand():
    exp = NoiseConfig(schedule="exponential", decay=0.9, floor=0.5)
    assert noise_scale(exp, 2, None, None) == pytest.approx(0.81)
    assert noise_scale(exp, 20, None, None) == 0.5
    score = NoiseConfig(schedule="score", floor=0.1)
    assert noise_scale(score, 0, None, 30.0) == 1.0  # no score yet
    assert noise_scale(score, 5, 15.0, 30.0) == pytest.approx(0.5)
    assert noise_scale(score, 5, 29.5, 30.0) == pytest.approx(0.1)
    assert noise_scale(score, 5, -3.0, 30.0) == 1.0
    assert noise_scale(NoiseConfig(), 50, 29.0, 30.0) == 1.0


def test_trailing_average_and_solve_episode_by_hand():
    assert trailing_average([1, 2, 3, 4], 2) == 3.5
    assert trailing_average([1, 2], 100) == 1.5
    scores = [0, 10, 20, 40, 50]  # window means: 10, 23.3, 36.7
    assert solved_episode(scores, window=3, target=30) == 5
    assert solved_episode([30, 30, 30], window=3, target=30) == 3  # reaching the target counts
    assert solved_episode([40, 40], window=3, target=30) is None  # never before a full window


def test_learning_effort_follows_the_score_and_comes_back_on_a_collapse():
    """A scripted run against target 30: effort 1 until an episode scores 30, the floor after it, all of
    it again after the collapse to 12, the floor once it scores 30 again."""
    scores = [3.0, 18.0, 30.0, 36.5, 37.0, 12.0, 29.9, 30.0]
    efforts = [learning_effort(scores[:end], 30.0, 100, 0.05, 10, 0.0) for end in range(len(scores) + 1)]
    assert efforts == [1.0, 1.0, 1.0, 0.05, 0.05, 0.05, 1.0, 1.0, 0.05]


def test_learning_effort_without_a_target_waits_for_a_plateau_by_hand():
    """Window 2, patience 2, margin 1. Scores 0, 10, 20, 21, 21.5, 20.5, 30: trailing averages 0, 5, 15,
    20.5, 21.25, 21, 25.25; their best so far 0, 5, 15, 20.5, 21.25, 21.25, 25.25."""
    scores = [0.0, 10.0, 20.0, 21.0, 21.5, 20.5, 30.0]
    efforts = [learning_effort(scores[:end], None, 2, 0.1, 2, 1.0) for end in range(1, len(scores) + 1)]
    # After 5 episodes the best rose 21.25 - 15 = 6.25 in 2 episodes: still rising. After 6: 21.25 - 20.5
    # = 0.75 <= 1, and the last score 20.5 is within 1 of 21.25: a plateau. After 7: the best rose
    # 25.25 - 20.5 = 4.75: rising again.
    assert efforts == [1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 1.0]
    assert learning_effort(scores[:5] + [19.0], None, 2, 0.1, 2, 1.0) == 1.0  # 19 fell more than 1 below 21.25


def filled_buffer(n=512, seed=0):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(1000, 5, 2, seed=seed)
    buffer.add(rng.standard_normal((n, 5)), rng.uniform(-1, 1, (n, 2)), rng.standard_normal(n),
               rng.standard_normal((n, 5)), rng.random(n) < 0.1)
    return buffer


def small_agent(**overrides):
    torch.manual_seed(0)
    config = AgentConfig(actor_hidden=[16, 16], critic_hidden=[16, 16], batch_size=32,
                         critic_grad_clip=0.0, **overrides)
    return DDPG(5, -np.ones(2), np.ones(2), config)


def test_targets_move_only_by_the_soft_update():
    agent = small_agent(tau=0.05)
    old_actor_target = copy.deepcopy(agent.actor_target.state_dict())
    old_critic_target = copy.deepcopy(agent.critic_target.state_dict())
    agent.learn(filled_buffer().sample(32))
    for old, target, local in ((old_actor_target, agent.actor_target, agent.actor),
                               (old_critic_target, agent.critic_target, agent.critic)):
        for name, value in target.state_dict().items():
            if value.is_floating_point():
                expected = 0.95 * old[name] + 0.05 * local.state_dict()[name]
                torch.testing.assert_close(value, expected, msg=name)
    assert all(not p.requires_grad for p in agent.critic_target.parameters())


def test_terminated_transitions_do_not_bootstrap_truncated_do():
    """With gamma 1 and a huge target value, only the terminated transition's target stays its reward."""
    agent = small_agent(gamma=1.0)
    with torch.no_grad():
        agent.critic_target.head[-1].bias.fill_(1000.0)
        agent.critic_target.head[-1].weight.zero_()
    buffer = ReplayBuffer(10, 5, 2)
    buffer.add(np.zeros((2, 5)), np.zeros((2, 2)), [1.0, 1.0], np.zeros((2, 5)), [True, False])
    batch = buffer.sample(2)
    with torch.no_grad():
        next_q = agent.critic_target(batch.next_obs, agent.actor_target(batch.next_obs))
    y = td_target(batch.rewards, batch.terminated, next_q, 1.0)
    torch.testing.assert_close(y[batch.terminated == 1], torch.ones(1))
    torch.testing.assert_close(y[batch.terminated == 0], torch.tensor([1001.0]))


def test_replay_wraps_around_and_samples_only_what_it_holds():
    buffer = ReplayBuffer(5, 1, 1, seed=0)
    buffer.add(np.arange(3)[:, None], np.zeros((3, 1)), np.arange(3), np.zeros((3, 1)), np.zeros(3))
    assert len(buffer) == 3
    assert set(buffer.sample(200).rewards.tolist()) == {0.0, 1.0, 2.0}
    buffer.add(np.arange(3, 7)[:, None], np.zeros((4, 1)), np.arange(3, 7), np.zeros((4, 1)), np.zeros(4))
    assert len(buffer) == 5 and buffer.position == 2
    assert buffer.rewards.tolist() == [5, 6, 2, 3, 4]  # 5 and 6 overwrote the oldest
    assert set(buffer.sample(500).rewards.tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}
    batch = buffer.sample(4)
    assert batch.weights.tolist() == [1.0] * 4 and batch.indices.shape == (4,)


def test_importance_weights_scale_the_critic_loss():
    agent = small_agent(gamma=0.0)  # y = r, so the loss is known from the critic's output alone
    batch = filled_buffer().sample(4)
    weights = torch.tensor([2.0, 0.0, 1.0, 0.5])
    with torch.no_grad():
        q = agent.critic(batch.obs, batch.actions)
    expected = (weights * (batch.rewards - q) ** 2).mean()
    out = agent.learn(batch._replace(weights=weights))
    torch.testing.assert_close(out["critic_loss"], expected)
    torch.testing.assert_close(out["td_error"], (batch.rewards - q).abs())


def test_layer_norm_networks_act_as_they_learn_batch_norm_ones_do_not():
    torch.manual_seed(0)
    obs, low, high = torch.randn(64, 5) * 10, -torch.ones(2), torch.ones(2)
    for layer_norm, batch_norm, same in ((True, False, True), (False, True, False)):
        actor = Actor(5, low, high, [16, 16], batch_norm=batch_norm, layer_norm=layer_norm)
        critic = Critic(5, 2, [16, 16], batch_norm=batch_norm, layer_norm=layer_norm)
        train = actor.train()(obs), critic.train()(obs, torch.zeros(64, 2))
        evaluation = actor.eval()(obs), critic.eval()(obs, torch.zeros(64, 2))
        assert all(torch.allclose(a, b) for a, b in zip(train, evaluation)) == same
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in
               Critic(5, 2, [16, 16, 16], batch_norm=False, layer_norm=True).modules()) == 3


def test_action_joins_the_critic_where_configured():
    at_input = Critic(5, 2, [16, 8], batch_norm=False, action_layer=0)
    linears = [m for m in at_input.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(7, 16), (16, 8), (8, 1)]
    second = Critic(5, 2, [16, 8], batch_norm=False, action_layer=1)
    linears = [m for m in second.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (18, 8), (8, 1)]
    assert second(torch.randn(3, 5), torch.randn(3, 2)).shape == (3,)


def _agent(batch_norm: bool, seed: int = 0, compile: bool = False, **overrides) -> DDPG:
    torch.manual_seed(seed)
    config = AgentConfig(**{"actor_hidden": [16, 16], "critic_hidden": [16, 16], "batch_norm": batch_norm,
                            "layer_norm": not batch_norm, "critic_grad_clip": 1.0, "actor_grad_clip": 0.5,
                            "compile": compile, **overrides})
    return DDPG(5, np.full(2, -1.0), np.ones(2), config)


def _batches(n: int) -> list[Batch]:
    g = torch.Generator().manual_seed(1)
    return [Batch(torch.randn(32, 5, generator=g), torch.rand(32, 2, generator=g) * 2 - 1,
                  torch.rand(32, generator=g), torch.randn(32, 5, generator=g),
                  (torch.rand(32, generator=g) < 0.1).float(), torch.ones(32), torch.rand(32, generator=g) + 0.5,
                  torch.arange(32)) for _ in range(n)]


class Reference:
    """DDPG's update as one would write it with plain autograd, torch.optim.Adam and clip_grad_norm_,
    on copies of an agent's networks: the independent account the agent's one update must match."""

    def __init__(self, agent: DDPG):
        c = self.config = agent.config
        self.actor, self.critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
        self.actor_target, self.critic_target = copy.deepcopy(agent.actor_target), copy.deepcopy(agent.critic_target)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr,
                                                weight_decay=c.actor_weight_decay, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr,
                                                 weight_decay=c.critic_weight_decay, fused=True)
        self.norms = []  # gradient norms before clipping: (critic, actor) per update

    def learn(self, b: Batch) -> None:
        c = self.config
        with torch.no_grad():
            y = b.rewards + c.gamma * (1 - b.terminated) * self.critic_target(b.next_obs, self.actor_target(b.next_obs))
        critic_loss = (b.weights * (y - self.critic(b.obs, b.actions)) ** 2).mean()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), c.critic_grad_clip or math.inf)
        self.critic_optimizer.step()
        self.critic.eval()  # the actor climbs the Q of the critic's running statistics
        actor_loss = -self.critic(b.obs, self.actor(b.obs)).mean()
        self.critic.train()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_norm = torch.nn.utils.clip_grad_norm_(self.actor.parameters(), c.actor_grad_clip or math.inf)
        self.actor_optimizer.step()
        with torch.no_grad():
            for target, local in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                for t, l in zip(target.state_dict().values(), local.state_dict().values()):
                    t.lerp_(l, c.tau) if t.is_floating_point() else t.copy_(l)
        self.norms.append((float(critic_norm), float(actor_norm)))


def _every_tensor(agent) -> dict[str, torch.Tensor]:
    """Parameters and buffers (batch-norm statistics) of all four networks, and Adam's moments and step counts."""
    tensors = {f"{name}.{key}": value for name in ("actor", "critic", "actor_target", "critic_target")
               for key, value in getattr(agent, name).state_dict().items()}
    for name in ("actor_optimizer", "critic_optimizer"):
        optimizer = getattr(agent, name)
        state = optimizer.state_dict()["state"]
        for i, moments in state.items():
            tensors |= {f"{name}.{i}.{k}": v for k, v in moments.items()}
    return tensors


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"])
@pytest.mark.parametrize("batch_norm", [False, True], ids=["layer-norm", "batch-norm"])
def test_the_one_update_matches_plain_autograd_adam_and_clipping(batch_norm, compile):
    """Clipping that bites, weight decay on, every tensor compared: bit for bit when run eagerly (the
    same torch kernels), to rounding when compiled (the compiler fuses and reorders)."""
    agent = _agent(batch_norm, compile=compile, critic_grad_clip=1e-3, actor_grad_clip=1e-4,
                   actor_weight_decay=0.01, critic_weight_decay=0.02)
    reference = Reference(agent)
    for batch in _batches(5):
        agent.learn(batch)
        reference.learn(batch)
    assert all(critic > 1e-3 and actor > 1e-4 for critic, actor in reference.norms)  # clipping bit every time
    mine, expected = _every_tensor(agent), _every_tensor(reference)
    assert mine.keys() == expected.keys() and any("running_var" in k for k in mine) == batch_norm
    for key, value in expected.items():
        if compile:
            torch.testing.assert_close(mine[key], value, rtol=1e-4, atol=1e-6, msg=key)
        else:
            assert torch.equal(mine[key], value), key
    assert agent._compiled_update is not None or not compile  # it did compile here, and did not fall back


@pytest.mark.slow
def test_the_shipped_reacher_update_compiled_matches_plain_autograd():
    """The update `make train` runs (configs/reacher.toml: 128-128 with layer norm, batch 256, 33 numbers
    in and 4 torques out, batches sampled from the replay buffer as the trainer does), compiled,
    against the plain account, to rounding. Its graph then sits in the compiler's disk cache, and
    `make train` after `make test` compiles from there."""
    shipped = load_config("configs/reacher.toml")
    config = shipped.agent
    assert config.compile
    torch.manual_seed(0)
    agent = DDPG(33, np.full(4, -1.0), np.ones(4), config)
    reference = Reference(agent)
    buffer = ReplayBuffer(4096, 33, 4, seed=0)
    rng = np.random.default_rng(0)
    buffer.add(rng.normal(size=(4096, 33)), rng.uniform(-1, 1, (4096, 4)), rng.uniform(0, 0.04, 4096),
               rng.normal(size=(4096, 33)), np.zeros(4096))
    with torch_threads(shipped.train.threads):  # as the trainer runs it: the thread count shapes the graph
        for _ in range(5):
            batch = buffer.sample(config.batch_size)
            agent.learn(batch)
            reference.learn(batch)
    assert agent._compiled_update is not None  # compiled, not fallen back
    mine, expected = _every_tensor(agent), _every_tensor(reference)
    assert mine.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(mine[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_the_actor_step_leaves_the_critics_batch_norm_statistics_alone():
    agent = _agent(batch_norm=True)
    agent.learn(_batches(1)[0])
    norm = agent.critic.state_layer[0]
    assert norm.num_batches_tracked == 1  # the critic's loss moved them, the actor's loss did not
    assert agent.critic.training


@pytest.mark.slow
def test_many_agents_compile_in_one_process():
    """Dynamo guards compiled graphs on the agent and keeps a limited number per code object (8; here
    2): each agent's update has its own, so a process can make agent after agent (a notebook, a
    sweep's worker). Before, the third agent here failed with FailOnRecompileLimitHit."""
    with torch._dynamo.config.patch(recompile_limit=2):
        for seed in range(3):
            agent = _agent(False, seed=seed, compile=True)
            for batch in _batches(2):
                agent.learn(batch)
            assert agent._compiled_update is not None and agent.updates == 2


def test_a_compiler_that_fails_leaves_the_same_update_uncompiled(capsys):
    eager, compiled = _agent(False), _agent(False)

    def no_compiler(*args):
        raise torch._dynamo.exc.BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler found\nmore"), None)
    compiled._compiled_update = no_compiler
    for batch in _batches(2):
        torch.testing.assert_close(eager.learn(batch)["td_error"], compiled.learn(batch)["td_error"])
    assert compiled._compiled_update is None and compiled.updates == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ddpg: warning: agent.compile: compiling the update failed (no C++ compiler found); it runs uncompiled"]


def test_a_passed_vector_isa_check_is_remembered_in_the_compile_cache(tmp_path, monkeypatch):
    """Inductor's check that a vector instruction set builds and loads (a compile and a Python process
    per set) runs once per compile cache, for the set inductor then uses only: later processes trust
    the marker and skip it; if that set fails, no marker, and inductor checks every set itself, as
    without the marker; a user's ATEN_CPU_CAPABILITY is left to inductor."""
    from torch._inductor import config, cpu_vec_isa
    if not cpu_vec_isa.x86_isa_checker():
        pytest.skip("inductor checks vector sets on x86 only")
    checked = []  # the sets whose basic check ran (what a marker skips)

    def check(isa, code):
        if code == cpu_vec_isa.VecISA._avx_code:
            checked.append(str(isa))
        return str(isa) != failing

    def new_process():  # what a new process starts from: nothing checked, nothing set
        config.cpp.vec_isa_ok = None
        cpu_vec_isa.valid_vec_isa_list.cache_clear()
        for cls in {cls for isa in cpu_vec_isa.supported_vec_isa_list for cls in type(isa).__mro__}:
            for method in ("_VecISA__bool__impl", "__bool__"):  # kept per set, not per setting
                getattr(cls.__dict__.get(method), "cache_clear", lambda: None)()
        checked.clear()

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", check)
    monkeypatch.setattr(config.cpp, "vec_isa_ok", None)
    try:
        failing = None
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
        for process in range(3):
            new_process()
            trust_checked_vector_isa()
            valid = [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()]
            assert checked == ([valid[0]] if process == 0 else []), process  # the best set, once only
            assert valid and config.cpp.vec_isa_ok is True
            assert str(cpu_vec_isa.pick_vec_isa()) == valid[0]  # the set checked is the one used
        assert len(list((tmp_path / "cache").glob("ddpg-vec-isa-ok-*"))) == 1

        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "other"))
        failing = valid[0]  # the best set fails to build
        for process in range(2):
            new_process()
            trust_checked_vector_isa()
            valid = [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()]
            assert set(checked) == set(valid) | {failing}, process  # checked every time
            assert failing not in valid and config.cpp.vec_isa_ok is None
        assert not list((tmp_path / "other").glob("ddpg-vec-isa-ok-*"))

        failing = None
        monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # the user picks a set: inductor checks them all
        new_process()
        trust_checked_vector_isa()
        assert config.cpp.vec_isa_ok is None and not checked
        assert str(cpu_vec_isa.pick_vec_isa()) == "avx2" and len(checked) == len(cpu_vec_isa.valid_vec_isa_list())
    finally:  # later tests check for real, with the setting as it was
        new_process()
        monkeypatch.undo()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_acting_gives_the_actors_forward_bit_for_bit_as_it_learns_and_loads(activation, layer_norm):
    """act() runs the actor as torch's own calls on its tensors, looked up once: the numbers of its
    forward, exactly, after updates and after loading other weights (both change the tensors in place),
    and in a deep copy of the agent (its own tensors, not the original's)."""
    agent = _agent(False, activation=activation, layer_norm=layer_norm)
    other = _agent(False, seed=7, activation=activation, layer_norm=layer_norm)
    assert agent._acting is not None
    obs = np.random.default_rng(0).standard_normal((20, 5))

    def forward():
        with torch.no_grad():
            return agent.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    first = agent.act(obs)
    np.testing.assert_array_equal(first, forward())
    for batch in _batches(3):
        agent.learn(batch)
    np.testing.assert_array_equal(agent.act(obs), forward())
    assert not np.array_equal(agent.act(obs), first)  # it did learn
    agent.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(agent.act(obs), other.act(obs))
    np.testing.assert_array_equal(agent.act(obs), forward())
    clone = copy.deepcopy(agent)
    for batch in _batches(2):
        agent.learn(batch)
    np.testing.assert_array_equal(clone.act(obs), other.act(obs))  # the copy did not learn
    np.testing.assert_array_equal(agent.act(obs), forward())


def test_acting_falls_back_to_forward_for_batch_norm_and_unknown_layers():
    assert _agent(True).actor.acting() is None  # its mode decides its function: act() switches to eval
    actor = _agent(False).actor
    actor.body.insert(1, torch.nn.Dropout(0.0))
    assert actor.acting() is None
