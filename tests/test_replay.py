"""Prioritized replay: the sum tree, sampling proportions, weights, annealing, wrap-around."""

import numpy as np
import pytest
import torch

from ddpg.replay import PrioritizedReplayBuffer, SumTree, importance_weights


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


def test_a_million_leaves_in_four_levels():
    tree = SumTree(1_000_000)
    assert [len(level) for level in tree.levels] == [32, 32 ** 2, 32 ** 3, 32 ** 4]
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
    np.testing.assert_allclose(buffer.tree.leaves[:4], [5.0, 5.0, 2.0, 3.0])
    assert buffer.tree.leaves[4:].sum() == 0 and buffer.tree.total == pytest.approx(15.0)
    batch = buffer.sample(4)
    assert (batch.indices < 4).all() and batch.weights.max() == 1.0


def test_state_round_trip_samples_the_same():
    a = PrioritizedReplayBuffer(16, 2, 1, seed=3)
    a.add(np.random.randn(10, 2), np.zeros((10, 1)), np.arange(10), np.zeros((10, 2)), np.zeros(10))
    a.update_priorities(torch.arange(10), torch.arange(10.0))
    b = PrioritizedReplayBuffer(16, 2, 1, seed=99)
    b.load_state_dict(a.state_dict())
    x, y = a.sample(5), b.sample(5)
    assert torch.equal(x.indices, y.indices) and torch.equal(x.weights, y.weights)
