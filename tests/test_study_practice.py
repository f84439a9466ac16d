"""Studies 1/2 scored as practice decides (studies.practice), on crafted runs whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from camtrap_ssl.core import fileio
from camtrap_ssl.studies import practice
from camtrap_ssl.train import rundir

CLASSES = ["empty", "zebra", "lion"]


def _run(path, probs, labels):
    fileio.atomic_write_npz(path / rundir.PREDICTIONS, {"probs": probs.astype(np.float16),
                                                        "labels": labels})
    fileio.atomic_write_json(path / rundir.PARAMS, {"classes": CLASSES})
    return str(path)


def _ranked(n_right: int, n: int = 100):
    """``n`` images, the ``n_right`` most confident correct, the rest wrong and less confident:
    coverage at 100 % accuracy is exactly ``n_right / n`` by construction."""
    labels = np.arange(n) % 3
    conf = np.linspace(0.99, 0.40, n)
    pred = np.where(np.arange(n) < n_right, labels, (labels + 1) % 3)
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), pred] = conf
    for k in range(n):  # the rest of the mass on the other two classes, below the top one
        others = [c for c in range(3) if c != pred[k]]
        probs[k, others] = (1 - conf[k]) / 2
    return probs, labels


def test_coverage_is_the_known_share_and_the_sl_difference_a_holm_family(tmp_path):
    rows = []
    for backbone, paradigm, rights in (("supervised", "SL", (40, 42, 44)),
                                       ("simclr", "SSL", (70, 72, 75)),
                                       ("swav", "SSL", (41, 40, 45))):
        for seed, n_right in enumerate(rights):
            d = tmp_path / f"{backbone}{seed}"
            d.mkdir()
            rows.append({"target": "syn_serengeti", "stands_in_for": "serengeti",
                         "backbone": backbone, "paradigm": paradigm,
                         "family": None if paradigm == "SL" else "instance", "seed": seed,
                         "run_dir": _run(d, *_ranked(n_right))})
    results = pd.DataFrame(rows)
    auto = practice.automation(results, target_accuracy=1.0)
    assert auto.coverage.tolist() == pytest.approx([40, 42, 44, 70, 72, 75, 41, 40, 45])
    # the empty class exists: the automated images are all correct, so empty-vs-animal is 100 %
    assert auto.empty_vs_animal.tolist() == pytest.approx([100.0] * 9)
    table = practice.coverage_table(results, target_accuracy=1.0)
    assert table.loc[("syn_serengeti", "simclr"), "verdict (Holm)"] == "simclr wins"
    assert table.loc[("syn_serengeti", "swav"), "verdict (Holm)"] == "no clear difference"
    assert table.loc[("syn_serengeti", "supervised"), "seeds reaching it"] == "3/3"


def test_a_target_accuracy_never_reached_counts_zero(tmp_path):
    probs, labels = _ranked(0)  # every prediction wrong
    d = tmp_path / "r"
    d.mkdir()
    results = pd.DataFrame([{"target": "t", "backbone": "supervised", "paradigm": "SL",
                             "seed": 0, "run_dir": _run(d, probs, labels)}])
    auto = practice.automation(results, 0.95)
    assert auto.coverage.tolist() == [0.0] and np.isnan(auto.empty_vs_animal.iloc[0])
