"""The one linear probe (camtrap_ssl.pretrain.probes) that the backbone checks and the target
probes of RQ1 (camtrap_ssl.experiments.probing) both fit."""
from types import SimpleNamespace

import numpy as np
import pytest

from camtrap_ssl.pretrain import probes


def _blobs(classes, n=40, dim=5, seed=0):
    g = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes), n)
    centres = g.normal(scale=4, size=(max(classes) + 1, dim))
    return centres[y] + g.normal(size=(len(y), dim)), y


@pytest.mark.parametrize("seen", [(0, 1, 3), (1, 2)])
def test_class_scores_cover_every_class_and_rank_as_the_probe_predicts(seen):
    x, y = _blobs(seen)
    clf = probes.fit_linear_probe(x, y)
    scores = probes.class_scores(clf, x, 4)
    assert scores.shape == (len(x), 4)
    unseen = [k for k in range(4) if k not in seen]
    assert np.isneginf(scores[:, unseen]).all() and np.isfinite(scores[:, list(seen)]).all()
    assert np.array_equal(scores.argmax(1), clf.predict(x))


def test_linear_probe_is_the_accuracy_of_the_one_fitted_probe():
    x, y = _blobs((0, 1, 2), seed=1)
    vx, vy = _blobs((0, 1, 2), seed=1)[0] + 0.5, y
    clf = probes.fit_linear_probe(x, y, c=0.1)
    assert clf[-1].max_iter == probes.PROBE_MAX_ITER and clf[-1].C == 0.1
    assert probes.linear_probe(x, y, vx, vy, c=0.1) == float((clf.predict(vx) == vy).mean())
    assert clf[-1].n_iter_[0] < probes.PROBE_MAX_ITER  # converged, not cut off


def test_target_probes_fit_the_same_probe(tmp_path, monkeypatch):
    """experiments.probing has no logistic regression of its own: it calls fit_linear_probe."""
    from camtrap_ssl.experiments import probing
    from camtrap_ssl.experiments.spec import RunSpec

    x, y = _blobs((0, 1, 2), n=30, seed=2)
    monkeypatch.setattr(probing, "target_features", lambda *a, **k: SimpleNamespace(
        train_x=x, train_y=y, val_x=x, val_y=y, classes=["a", "b", "c"]))
    monkeypatch.setattr(probing, "backbone_sha256", lambda *a: "fixed")
    calls = []

    def spy(*args, **kw):
        calls.append(args)
        return probes.fit_linear_probe(*args, **kw)

    monkeypatch.setattr(probing, "fit_linear_probe", spy)
    out = probing.linear_probe_run(RunSpec("supervised", "syn_ena24", "tiny", seed=0,
                                           runs_root=tmp_path, label_fraction=1.0))
    assert len(calls) == 1 and len(calls[0][0]) == len(x)
    assert out["top1"] == pytest.approx(100 * probes.linear_probe(x, y, x, y))
