import numpy as np

from mtools.training.ngram import NGram, best_ngram, next_event_nll


def test_probabilities_sum_to_one_after_any_history():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 5, 50) for _ in range(10)]
    model = NGram(5, 4).fit(train)
    for history in ([], [1], [2, 3], [0, 1, 4], [4, 4, 4, 4]):
        total = sum(np.exp(model.log_prob([np.array(history + [w])])[-1]) for w in range(5))
        assert abs(total - 1.0) < 1e-9


def test_higher_orders_learn_a_deterministic_pattern():
    pattern = np.array([0, 1, 2, 3, 2, 1] * 40)
    model, by_order = best_ngram([pattern], [pattern[:60]], 4, orders=range(1, 5))
    assert by_order[1] > by_order[2] > by_order[3] and by_order[3] < 0.1
    assert model.order >= 3


def test_unseen_events_keep_probability():
    model = NGram(6, 3).fit([np.array([0, 1, 0, 1, 0, 1])])
    assert np.isfinite(next_event_nll(model, [np.array([0, 5, 4, 3])]))
