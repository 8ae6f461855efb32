"""Sampling over logits (mtools.models.sampling): the classes drawn follow
the distribution, never a class of zero weight, and the log-probabilities
returned are those of the classes drawn."""

from __future__ import annotations

import numpy as np
import pytest

from mtools.models.sampling import inverse_cdf, log_softmax, sample_categorical, sample_logits


@pytest.mark.parametrize("classes, blocks", [(5, None), (38, None), (512, None), (517, None),
                                            (512, False)])  # blocks: even and ragged
def test_draws_follow_the_weights(classes, blocks):
    rng = np.random.default_rng(0)
    weights = rng.random(classes) ** 4  # uneven
    weights[::7] = 0.0
    draws = 40_000
    chosen = inverse_cdf(np.tile(weights.astype(np.float32), (draws, 1)), rng.random(draws),
                         blocks=blocks)
    counts = np.bincount(chosen, minlength=classes)
    expected = draws * weights / weights.sum()
    assert counts[weights == 0].sum() == 0
    # five standard deviations of a binomial count, per class
    assert np.all(np.abs(counts - expected) <= 5 * np.sqrt(expected + 1))


@pytest.mark.parametrize("classes, blocks", [(6, None), (100, False), (100, True)])
def test_extreme_draws_never_pick_a_class_of_zero_weight(classes, blocks):
    weights = np.zeros((4, classes), np.float32)
    weights[:, 2] = 1.0
    weights[:, classes - 3] = 1e-30
    draws = np.array([0.0, 0.5, np.nextafter(1.0, 0.0), 1.0 - 1e-12])
    chosen = inverse_cdf(weights, draws, blocks=blocks)
    assert set(chosen.tolist()) <= {2, classes - 3}
    assert chosen[0] == 2


def test_the_log_probabilities_are_those_of_the_classes_drawn():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(64, 512)).astype(np.float32) * 3
    for temperature in (1.0, 0.5):
        classes, log_probs = sample_logits(logits, temperature, np.random.default_rng(2))
        want = log_softmax(logits, temperature)[np.arange(64), classes]
        assert log_probs.dtype == np.float64
        np.testing.assert_allclose(log_probs, want, atol=1e-5)


def test_temperature_zero_takes_the_most_likely_class():
    logits = np.random.default_rng(3).normal(size=(16, 40)).astype(np.float32)
    classes, _ = sample_logits(logits, 0.0, np.random.default_rng(4))
    assert np.array_equal(classes, logits.argmax(axis=1))


def test_a_seed_repeats_a_draw():
    log_probs = log_softmax(np.random.default_rng(5).normal(size=(8, 90)))
    first = sample_categorical(log_probs, np.random.default_rng(6))
    assert np.array_equal(first, sample_categorical(log_probs, np.random.default_rng(6)))


def test_rounding_inside_a_block_never_picks_a_class_of_zero_weight():
    # A tiny first class, then nothing until class 10: the draw falls just
    # past the tiny class, where a difference of running sums can round.
    weights = np.zeros((1, 81), np.float32)
    weights[0, 0], weights[0, 10] = np.float32(0.6 * 2**-52), 1.5
    assert inverse_cdf(weights, np.array([2.0**-53]), blocks=True)[0] in (0, 10)
    # The float32 block sum exceeds the float64 sum inside it: a draw near
    # the end runs past the block's last class of positive weight.
    weights = np.zeros((1, 81), np.float32)
    weights[0, 0], weights[0, 1] = 1.0, 0.75 * 2**-23
    assert inverse_cdf(weights, np.array([1 - 2.0**-30]), blocks=True)[0] in (0, 1)


def test_small_batches_are_summed_in_one_pass_and_large_ones_in_blocks(monkeypatch):
    from mtools.models import sampling

    passes = []
    cumsum = np.cumsum
    monkeypatch.setattr(sampling.np, "cumsum",
                        lambda a, *args, **kw: passes.append(a.shape) or cumsum(a, *args, **kw))
    for rows in (1, 64):
        inverse_cdf(np.ones((rows, 512), np.float32), np.full(rows, 0.5))
    assert passes == [(1, 512), (64, 23), (64, 23)]  # blocks of 23: across, then inside one
