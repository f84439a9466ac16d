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
