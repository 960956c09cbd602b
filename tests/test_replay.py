"""Prioritized replay: the sum tree, sampling proportions, weights, annealing, wrap-around."""

import numpy as np
import pytest
import torch

from ddpg.replay import PrioritizedReplayBuffer, ReplayBuffer, SumTree, importance_weights


def test_tree_totals_and_search_by_hand():
    tree = SumTree(100)  # two levels of 32
    tree.set(np.array([0, 1, 2, 40, 99]), np.array([1.0, 2.0, 3.0, 4.0, 10.0]))
    assert tree.total == 20.0
    assert tree.levels[0][0] == 6.0 and tree.levels[0][1] == 4.0 and tree.levels[0][3] == 10.0
    # Running sums: [0, 1) -> 0, [1, 3) -> 1, [3, 6) -> 2, [6, 10) -> 40, [10, 20) -> 99
    found = tree.find(np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.999, 6.0, 9.99, 10.0, 19.999999]))
    assert found.tolist() == [0, 0, 1, 1, 2, 2, 40, 40, 99, 99]
    tree.set(np.array([99, 99]), np.array([5.0, 0.5]))  # a repeated index keeps its last value
    assert tree.total == pytest.approx(10.5)
    assert tree.find(np.array([10.5])).tolist() == [99]  # the very top stays on a leaf with mass


def test_a_million_leaves_in_four_levels_sized_to_the_capacity():
    tree = SumTree(1_000_000)
    # 1,000,000 leaves = 31,250 nodes of 32 -> 977 -> 31 nodes, each level rounded up to whole nodes
    assert [len(level) for level in tree.levels] == [32, 992, 31_264, 1_000_000]
    assert SumTree.level_sizes(2_000_000)[-1] == 2_000_000  # not 32^5 = 33.5 million leaves
    assert SumTree.bytes_needed(1_000_000) == 8 * (2 * (32 + 992 + 31_264 + 1_000_000) - 1_000_000)
    rng = np.random.default_rng(0)
    index = rng.choice(1_000_000, 5000, replace=False)
    values = rng.random(5000)
    tree.set(index, values)
    assert tree.total == pytest.approx(values.sum())
    found = tree.find(rng.random(10_000) * tree.total)
    assert np.isin(found, index).all()


def test_sampling_follows_priorities_statistically():
    buffer = PrioritizedReplayBuffer(8, 1, 1, seed=0, alpha=1.0)
    buffer.add(np.zeros((4, 1)), np.zeros((4, 1)), np.arange(4), np.zeros((4, 1)), np.zeros(4))
    buffer.update_priorities(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]) - 1e-6)  # + epsilon
    counts = np.zeros(4)
    for _ in range(2000):
        counts += np.bincount(buffer.sample(10).indices.numpy(), minlength=4)
    expected = np.array([1, 2, 3, 4]) / 10 * counts.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001


def test_alpha_flattens_priorities():
    buffer = PrioritizedReplayBuffer(8, 1, 1, alpha=0.5, epsilon=0.0 + 1e-12)
    buffer.add(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.zeros(2))
    buffer.update_priorities(torch.tensor([0, 1]), torch.tensor([4.0, -16.0]))
    np.testing.assert_allclose(buffer.tree.leaves[:2], [2.0, 4.0])
    assert buffer.max_priority == pytest.approx(4.0)


def test_the_tree_keeps_the_maximum_of_each_node():
    tree = SumTree(100)
    tree.set(np.array([0, 40, 99]), np.array([1.0, 4.0, 10.0]))
    assert tree.max == 10.0 and tree.maxima[0][3] == 10.0 and tree.maxima[0][1] == 4.0
    tree.set(np.array([99]), np.array([0.5]))
    assert tree.max == 4.0


def test_new_transitions_enter_at_the_largest_priority_held_not_the_largest_ever():
    buffer = PrioritizedReplayBuffer(4, 1, 1, alpha=1.0, epsilon=1e-12)
    assert buffer.max_priority == 1.0  # empty
    buffer.add(np.zeros((3, 1)), np.zeros((3, 1)), np.zeros(3), np.zeros((3, 1)), np.zeros(3))
    # Reacher-sized TD errors: all far below 1. Entries after them must not come in at 1.
    buffer.update_priorities(torch.arange(3), torch.tensor([0.02, 0.05, 0.01]))
    buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.zeros(1))
    np.testing.assert_allclose(buffer.tree.leaves[3], 0.05)
    buffer.update_priorities(torch.tensor([1, 3]), torch.tensor([0.03, 0.03]))  # the 0.05s come down
    assert buffer.max_priority == pytest.approx(0.03)
    # Overwriting the slot that holds the largest (index 0 after wrap-around) drops it first.
    buffer.update_priorities(torch.tensor([0]), torch.tensor([0.5]))
    buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.zeros(1))
    np.testing.assert_allclose(buffer.tree.leaves[:4], [0.03, 0.03, 0.01, 0.03])


def test_sample_returns_the_importance_weights_of_what_it_drew():
    buffer = PrioritizedReplayBuffer(4, 1, 1, alpha=1.0, beta=0.5, beta_steps=10**9, epsilon=1e-12)
    buffer.add(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros(4), np.zeros((4, 1)), np.zeros(4))
    buffer.update_priorities(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    batch = buffer.sample(64)
    # P = p / 10; (N P)^-0.5 = (0.4 p)^-0.5; the largest weight is that of p = 1: 0.4^-0.5
    expected = (0.4 * (batch.indices.numpy() + 1.0)) ** -0.5 / 0.4 ** -0.5
    assert 0 in batch.indices  # so that the division by the batch's largest is the one by hand
    np.testing.assert_allclose(batch.weights.numpy(), expected, rtol=1e-6)


def test_importance_weights_by_hand():
    weights = importance_weights(np.array([0.5, 0.25, 0.125]), size=4, beta=1.0)
    # (4 * P)^-1 = 0.5, 1, 2; divided by the largest, 2
    np.testing.assert_allclose(weights, [0.25, 0.5, 1.0])
    np.testing.assert_allclose(importance_weights(np.array([0.5, 0.25]), 4, beta=0.0), [1.0, 1.0])


def test_beta_anneals_linearly_to_one_and_stays():
    buffer = PrioritizedReplayBuffer(8, 1, 1, beta=0.4, beta_steps=10)
    buffer.add(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros(4), np.zeros((4, 1)), np.zeros(4))
    assert buffer.beta == pytest.approx(0.4)
    for _ in range(5):
        buffer.sample(2)
    assert buffer.beta == pytest.approx(0.7)
    for _ in range(50):
        buffer.sample(2)
    assert buffer.beta == 1.0


def test_new_transitions_get_the_largest_priority_and_wrap_around():
    buffer = PrioritizedReplayBuffer(4, 1, 1, alpha=1.0, epsilon=1e-12)
    buffer.add(np.zeros((4, 1)), np.zeros((4, 1)), np.arange(4), np.zeros((4, 1)), np.zeros(4))
    buffer.update_priorities(torch.arange(4), torch.tensor([1.0, 5.0, 2.0, 3.0]))
    buffer.add(np.ones((2, 1)), np.zeros((2, 1)), [10.0, 11.0], np.zeros((2, 1)), np.zeros(2))
    assert buffer.rewards.tolist() == [10.0, 11.0, 2.0, 3.0]  # the oldest two were overwritten
    # The 1.0 and 5.0 left with the transitions they belonged to: the largest held is 3.0
    np.testing.assert_allclose(buffer.tree.leaves[:4], [3.0, 3.0, 2.0, 3.0])
    assert buffer.tree.leaves[4:].sum() == 0 and buffer.tree.total == pytest.approx(11.0)
    batch = buffer.sample(4)
    assert (batch.indices < 4).all() and batch.weights.max() == 1.0


def test_state_round_trip_samples_the_same():
    a = PrioritizedReplayBuffer(16, 2, 1, seed=3)
    a.add(np.random.randn(10, 2), np.zeros((10, 1)), np.arange(10), np.zeros((10, 2)), np.zeros(10))
    a.update_priorities(torch.arange(10), torch.arange(10.0))
    b = PrioritizedReplayBuffer(16, 2, 1, seed=99)
    b.load_state_dict(a.state_dict() | {"rows": np.concatenate(a.rows(0, 10))})
    x, y = a.sample(5), b.sample(5)
    assert torch.equal(x.indices, y.indices) and torch.equal(x.weights, y.weights) and torch.equal(x.obs, y.obs)


def test_rows_come_oldest_first_across_the_wrap_and_load_back_into_their_rows():
    a = ReplayBuffer(4, 1, 1)
    for rewards in ([0.0, 1.0, 2.0], [3.0, 4.0, 5.0]):
        a.add(np.zeros((3, 1)), np.zeros((3, 1)), rewards, np.zeros((3, 1)), np.zeros(3))
    assert a.rewards.tolist() == [4.0, 5.0, 2.0, 3.0] and (a.added, a.position) == (6, 2)
    wrapped = a.rows(2, 6)  # two stretches, views of the storage
    assert [s[:, 2].tolist() for s in wrapped] == [[2.0, 3.0], [4.0, 5.0]] and a.rows(5, 6)[0][:, 2].tolist() == [5.0]
    assert all(np.shares_memory(s, a.storage.numpy()) for s in wrapped)
    b = ReplayBuffer(4, 1, 1)
    b.load_state_dict(a.state_dict() | {"rows": np.concatenate(wrapped)})
    assert torch.equal(b.storage, a.storage) and (b.added, b.position, b.size) == (6, 2, 4)
    # Format 2: each field's rows in storage order, and no count of what was added.
    old = {k: v for k, v in a.state_dict().items() if k != "added"} | {
        name: getattr(a, name).clone() for name in ReplayBuffer.FIELDS}
    c = ReplayBuffer(4, 1, 1)
    c.load_state_dict(old)
    assert torch.equal(c.storage, a.storage) and c.added % 4 == 2 and c.added >= 4
