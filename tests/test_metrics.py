import math

import numpy as np
import pytest

from camtrap_ssl.train import metrics as M


def test_topk_and_report():
    logits = np.array([[3, 2, 1, 0], [0, 1, 3, 2], [1, 0, 0, 3]], dtype=float)
    y = np.array([0, 3, 1])
    assert M.topk_accuracy(logits, y, 1) == pytest.approx(1 / 3)
    assert M.topk_accuracy(logits, y, 2) == pytest.approx(2 / 3)
    rep = M.classification_report(logits, y, ["a", "b", "c", "d"])
    assert rep["top1"] == pytest.approx(100 / 3)
    assert rep["confusion"][3][2] == 1
    # class a: predicted once, correct once; class c: predicted once, never true -> precision 0
    assert rep["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "support": 1}
    assert rep["per_class"]["c"]["precision"] == 0.0 and rep["per_class"]["c"]["recall"] is None


def test_precision_recall_nan_when_undefined():
    cm = np.array([[2, 0], [0, 0]])
    p, r = M.precision_recall(cm)
    assert p[0] == 1 and math.isnan(p[1]) and math.isnan(r[1])


def test_convergence_epoch():
    top1 = [50, 80, 89.7, 90, 89.9]
    assert M.convergence_epoch(top1, 0.5) == 3
    assert M.convergence_epoch(top1, 0.0) == 4
    assert M.convergence_epoch(top1, 10) == 2
    with pytest.raises(ValueError, match="tolerance"):
        M.convergence_epoch(top1, -1)


# A hand-computed case (rows: true class, columns: predicted); class 3 is absent from the
# evaluation set and never predicted, so it must not count in the per-class means.
CM = np.array([[3, 1, 0, 0],
               [1, 1, 0, 0],
               [0, 1, 3, 0],
               [0, 0, 0, 0]])


def _labels(cm):
    """(y_true, y_pred) whose confusion matrix is ``cm``."""
    pairs = [(i, j) for i in range(len(cm)) for j in range(len(cm)) for _ in range(cm[i][j])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def test_macro_f1_and_balanced_accuracy_by_hand():
    # F1: class 0 P=3/4 R=3/4 -> 0.75; class 1 P=1/3 R=1/2 -> 0.4; class 2 P=1 R=3/4 -> 6/7
    assert M.macro_f1(CM) == pytest.approx(100 * (0.75 + 0.4 + 6 / 7) / 3)
    # recalls 3/4, 1/2, 3/4
    assert M.balanced_accuracy(CM) == pytest.approx(100 * (0.75 + 0.5 + 0.75) / 3)


def test_macro_f1_and_balanced_accuracy_match_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    for trial in range(20):
        k = int(rng.integers(2, 9))
        y = rng.integers(0, k, 60)
        pred = np.where(rng.random(60) < 0.5, y, rng.integers(0, k, 60))
        cm = M.confusion_matrix(y, pred, k + 1)  # one extra, unseen class
        present = np.unique(y)
        assert M.macro_f1(cm) == pytest.approx(
            100 * f1_score(y, pred, labels=present, average="macro", zero_division=0))
        assert M.balanced_accuracy(cm) == pytest.approx(100 * balanced_accuracy_score(y, pred))


def test_tail_classes_are_below_the_median_training_frequency():
    assert M.tail_classes([50, 10, 5, 30]) == [1, 2]  # median 20
    assert M.tail_classes([7, 7, 7]) == []  # uniform: no tail
    # tail top-1 over the images of classes 1 and 2: (1 + 3) correct of 2 + 4
    assert M.tail_top1(CM, [1, 2]) == pytest.approx(100 * 4 / 6)
    assert M.tail_top1(CM, []) is None and M.tail_top1(CM, [3]) is None


def test_empty_vs_animal_counts_any_species_as_animal():
    # class 0 is "empty": 3 empty kept empty; of the animals (rows 1, 2), those predicted as any
    # animal: 1 + 0 + 1 + 3 = 5; 10 images in all
    assert M.empty_vs_animal_accuracy(CM, 0) == pytest.approx(80.0)
    rep = M.classification_report(np.eye(4)[_labels(CM)[1]], _labels(CM)[0],
                                  ["empty", "a", "b", "c"], train_counts=[50, 10, 5, 30])
    assert rep["empty_acc"] == pytest.approx(80.0) and rep["tail_classes"] == ["a", "b"]
    assert M.classification_report(np.eye(4)[[0, 1]], np.array([0, 1]), list("wxyz"))["empty_acc"] is None


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.95, 0.05], [0.94, 0.06], [0.9, 0.1], [0.3, 0.7], [0.62, 0.38]])
    y = np.array([0, 1, 1, 1, 1])
    # confidences .95 and .94 share bin (14/15, 1]: accuracy 1/2, confidence .945; the other three
    # are alone in theirs: |0 - .9|, |1 - .7|, |0 - .62|
    expected = (2 / 5) * abs(0.5 - 0.945) + (1 / 5) * (0.9 + 0.3 + 0.62)
    assert M.expected_calibration_error(probs, y) == pytest.approx(100 * expected)
    # with one bin ECE is |accuracy - mean confidence|
    assert M.expected_calibration_error(probs, y, n_bins=1) == pytest.approx(
        100 * abs(2 / 5 - np.mean([0.95, 0.94, 0.9, 0.7, 0.62])))
    # a perfectly calibrated set: confidence 0.75 and 3 of 4 right
    cal = np.array([[0.75, 0.25]] * 4)
    assert M.expected_calibration_error(cal, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # the report computes it from logits through softmax
    rep = M.classification_report(np.log(probs), y, ["a", "b"])
    assert rep["ece"] == pytest.approx(100 * expected)


def test_common_threshold_removes_the_own_best_bias():
    fast_high = [10, 50, 80, 90]  # final 90
    plateau_low = [60, 70, 72, 72]  # plateaus early, lower
    # against its own best the low plateau "converges" first ...
    assert M.convergence_epoch(plateau_low, 0.5) == 3 < M.convergence_epoch(fast_high, 0.5) == 4
    # ... against 95 % of the best final top-1 (85.5) it never gets there
    thr = M.common_threshold([fast_high[-1], plateau_low[-1]], 0.95)
    assert thr == pytest.approx(85.5)
    assert M.epochs_to_reach(fast_high, thr) == 4
    assert M.epochs_to_reach(plateau_low, thr) is None
    assert M.epochs_to_reach(plateau_low, M.common_threshold([72], 0.95)) == 2  # 68.4
    with pytest.raises(ValueError, match="share"):
        M.common_threshold([1.0], 1.5)


def test_the_empty_class_is_found_by_any_of_its_names():
    """LILA's "empty", Camtrap DP's "blank": one list, the same in the data and train layers."""
    from camtrap_ssl.data import cct, megadetector

    assert set(M.EMPTY_NAMES) == set(cct.EMPTY_NAMES) == set(megadetector.EMPTY_NAMES)
    logits = np.array([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [5.0, 0.0]])
    y = np.array([0, 1, 0, 1])
    for name in ("blank", "empty", "Nothing"):
        rep = M.classification_report(logits, y, [name, "zebra"])
        assert rep["empty_acc"] == pytest.approx(75.0)  # 3 of 4 empty/animal calls right
    assert M.classification_report(logits, y, ["deer", "zebra"])["empty_acc"] is None
