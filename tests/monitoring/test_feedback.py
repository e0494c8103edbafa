"""Live accuracy equals scikit-learn's on the same labels, whatever order they come in."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)

from modelport.monitoring.feedback import FeedbackStore, classification_metrics
from modelport.monitoring.task import TaskInfo


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def sk_classification(y_true, y_pred, average):
    kw = {"average": average, "zero_division": 0}
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, **kw),
        "recall": recall_score(y_true, y_pred, **kw),
        "f1": f1_score(y_true, y_pred, **kw),
    }


def feed(store, ids, labels, order, chunk=7):
    items = [{"id": ids[i], "label": labels[i]} for i in order]
    out = {"joined": 0, "duplicates": 0, "unknown": 0, "invalid": 0}
    for start in range(0, len(items), chunk):
        r = store.add_feedback(items[start : start + chunk])
        for k in out:
            out[k] += r[k]
    return out


@pytest.mark.parametrize(("n_classes", "average"), [(2, "binary"), (3, "macro"), (10, "macro")])
def test_classification_equals_sklearn_with_shuffled_and_duplicate_feedback(n_classes, average):
    rng = np.random.default_rng(n_classes)
    n = 600
    y_true = rng.integers(0, n_classes, n)
    noise = rng.random(n) < 0.3
    y_pred = np.where(noise, rng.integers(0, n_classes, n), y_true)
    store = FeedbackStore("m", window=10_000)
    store.set_task("1", TaskInfo("classification", "label"))
    ids = [f"req-{i}" for i in range(n)]
    for i in range(n):
        store.remember(ids[i], "1", np.array([y_pred[i]], dtype=np.int64))
    order = rng.permutation(n)  # out of order
    dup = rng.choice(n, 100, replace=False)  # the same labels sent again
    counts = feed(store, ids, y_true.tolist(), [*order, *dup])
    assert counts == {"joined": n, "duplicates": 100, "unknown": 0, "invalid": 0}
    perf = store.performance("1")
    assert perf["count"] == n
    assert perf["average"] == average
    for k, v in sk_classification(y_true, y_pred, average).items():
        assert perf[k] == pytest.approx(v), k


def test_last_label_wins_for_a_duplicate_id():
    store = FeedbackStore("m")
    store.set_task("1", TaskInfo("classification", "label"))
    preds = [0, 1, 1, 0, 1]
    for i, p in enumerate(preds):
        store.remember(f"r{i}", "1", np.array([p]))
    truth = [0, 1, 0, 0, 0]
    store.add_feedback([{"id": f"r{i}", "label": t} for i, t in enumerate(truth)])
    r = store.add_feedback([{"id": "r2", "label": 1}, {"id": "r4", "label": 1}])  # corrections
    assert r["duplicates"] == 2
    assert r["joined"] == 0
    corrected = [0, 1, 1, 0, 1]
    perf = store.performance("1")
    assert perf["count"] == 5
    assert perf["accuracy"] == accuracy_score(corrected, preds) == 1.0


def test_string_classes_and_probability_outputs():
    store = FeedbackStore("m")
    store.set_task("1", TaskInfo("classification", "label"))
    store.set_task("2", TaskInfo("classification", "probabilities", argmax=True))
    names = np.array([b"cat", b"dog", b"cat"], dtype=object)
    for i, name in enumerate(names):
        store.remember(f"a{i}", "1", np.array([name], dtype=object))
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    for i, row in enumerate(probs):
        store.remember(f"b{i}", "2", row[None, :])
    store.add_feedback(
        [{"id": f"a{i}", "label": lab} for i, lab in enumerate(["cat", "cat", "cat"])]
    )
    store.add_feedback([{"id": f"b{i}", "label": lab} for i, lab in enumerate([0, 1, 1])])
    assert store.performance("1")["accuracy"] == pytest.approx(2 / 3)
    assert store.performance("2")["accuracy"] == pytest.approx(2 / 3)
    assert store.versions() == ["1", "2"]


def test_batched_request_takes_a_list_of_labels():
    store = FeedbackStore("m")
    store.set_task("1", TaskInfo("classification", "label"))
    store.remember("batch", "1", np.array([0, 1, 2, 2]))
    r = store.add_feedback([{"id": "batch", "label": [0, 1, 1]}])
    assert r["invalid"] == 1
    assert "3 label(s)" in r["errors"][0]
    store.add_feedback([{"id": "batch", "label": [0, 1, 1, 2]}])
    perf = store.performance("1")
    assert perf["count"] == 4
    assert perf["f1"] == pytest.approx(
        f1_score([0, 1, 1, 2], [0, 1, 2, 2], average="macro", zero_division=0)
    )


def test_regression_equals_sklearn():
    rng = np.random.default_rng(0)
    n = 300
    y_true = rng.normal(50, 10, n)
    y_pred = y_true + rng.normal(0, 3, n)
    store = FeedbackStore("house", window=10_000)
    store.set_task("4", TaskInfo("regression", "variable"))
    for i in range(n):
        store.remember(f"r{i}", "4", np.array([[y_pred[i]]], dtype=np.float32))
    feed(store, [f"r{i}" for i in range(n)], y_true.tolist(), [*rng.permutation(n), 3, 3, 7])
    perf = store.performance("4")
    pred32 = y_pred.astype(np.float32).astype(np.float64)
    assert perf["task"] == "regression"
    assert perf["count"] == n
    assert perf["mae"] == pytest.approx(mean_absolute_error(y_true, pred32))
    assert perf["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y_true, pred32)))
    r = store.add_feedback([{"id": "r1", "label": "tall"}])
    assert r["invalid"] == 1


def test_label_before_prediction_is_joined_when_the_prediction_arrives():
    store = FeedbackStore("m")
    store.set_task("1", TaskInfo("classification", "label"))
    r = store.add_feedback([{"id": "early", "label": 1}])
    assert r["unknown"] == 1
    assert store.performance("1")["count"] == 0
    store.remember("early", "1", np.array([1]))
    assert store.performance("1")["count"] == 1


def test_predictions_expire_and_are_bounded():
    clock = Clock()
    store = FeedbackStore("m", ttl_s=60, max_predictions=100, clock=clock)
    store.set_task("1", TaskInfo("classification", "label"))
    store.remember("old", "1", np.array([1]))
    clock.t += 61
    store.remember("new", "1", np.array([1]))
    r = store.add_feedback([{"id": "old", "label": 1}, {"id": "new", "label": 1}])
    assert (r["joined"], r["unknown"]) == (1, 1)
    for i in range(500):
        store.remember(f"r{i}", "1", np.array([0]))
    assert store.pending() == 100
    assert store.add_feedback([{"id": "r0", "label": 0}])["unknown"] == 1
    assert store.add_feedback([{"id": "r499", "label": 0}])["joined"] == 1


def test_rolling_window_covers_the_newest_labels():
    store = FeedbackStore("m", window=100)
    store.set_task("1", TaskInfo("classification", "label"))
    for i in range(300):
        store.remember(f"r{i}", "1", np.array([1]))
    # the first 200 labels disagree, the newest 100 agree
    store.add_feedback([{"id": f"r{i}", "label": 0 if i < 200 else 1} for i in range(300)])
    perf = store.performance("1")
    assert perf["count"] == 100
    assert perf["accuracy"] == 1.0


def test_invalid_items_are_counted_not_raised():
    store = FeedbackStore("m")
    r = store.add_feedback([{"label": 1}, {"id": 3, "label": 1}, {"id": "x"}, "junk"])  # type: ignore[list-item]
    assert r["invalid"] == 4
    assert len(r["errors"]) == 4


def test_empty_window_reports_nothing():
    assert classification_metrics(np.array([]), np.array([]))["accuracy"] is None
    store = FeedbackStore("m")
    perf = store.performance("9")
    assert perf["count"] == 0
    assert perf["accuracy"] is None


def test_a_reused_id_keeps_its_newest_prediction_until_that_one_is_overwritten():
    store = FeedbackStore("m", max_predictions=3)
    store.set_task("1", TaskInfo("classification", "label"))
    store.remember("a", "1", np.array([0]))
    store.remember("a", "1", np.array([1]))  # the client re-used its id
    store.remember("b", "1", np.array([1]))
    store.remember("c", "1", np.array([1]))  # takes the first "a"'s slot
    assert store.pending() == 3
    assert store.add_feedback([{"id": "a", "label": 1}])["joined"] == 1
    assert store.performance("1")["accuracy"] == 1.0  # joined with the newer prediction
    store.remember("d", "1", np.array([1]))  # takes the second "a"'s slot
    assert store.add_feedback([{"id": "a", "label": 1}])["duplicates"] == 1  # relabelled
    assert store.add_feedback([{"id": "b", "label": 1}])["joined"] == 1
