"""``camtrap-ssl compare``: cached features, probes with known answers, the Holm family, refusals."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from camtrap_ssl.core.intervals import holm
from camtrap_ssl.experiments import compare as C
from camtrap_ssl.experiments import compare_stats as S
from camtrap_ssl.pretrain.probes import knn_scores
from camtrap_ssl.train import metrics as M


def _no_network(monkeypatch):
    """Any model built or run from now on fails the test."""
    monkeypatch.setattr(C, "create_backbone", lambda *a, **k: pytest.fail("built a backbone"))
    monkeypatch.setattr(C, "_extract", lambda *a, **k: pytest.fail("ran a forward pass"))


def test_features_are_extracted_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    lines = []
    plan = C.plan_compare("syn_serengeti", ["supervised"], "tiny", label_fractions=[0.5, 1],
                          seeds=[0, 1, 2], out=tmp_path / "a", render=False,
                          runs_root=tmp_path / "runs")
    first = C.run_compare(plan, progress=False, echo=lines.append)
    path = C.feature_path(plan.specs[0])
    assert path.is_file() and path.is_relative_to(tmp_path / "cache" / "features")
    assert any("estimated time on this machine" in x for x in lines)
    assert "cached for 0 of 1" in "\n".join(lines)
    # the runs table: every column, one row per protocol x share x seed, its provenance
    runs = pd.read_csv(first.csv)
    assert list(runs.columns) == list(C.COLUMNS)
    assert len(runs) == 2 * 2 * 3
    assert set(runs["protocol"]) == {"linear probe", "kNN"}
    assert (runs["source"] == str(path)).sum() == len(runs)
    assert runs["code_version"].str.len().min() >= 7
    assert runs.loc[runs["protocol"] == "kNN", "knn_k"].min() >= 1
    assert runs.loc[runs["protocol"] == "linear probe", "knn_k"].isna().sum() == 6
    # with all labels every seed labels the same images
    full = runs[runs["label_fraction"] == 1]
    assert full["n_labelled"].nunique() == 1 and full["n_labelled"].iloc[0] > 0
    # a second comparison runs no network and gives the same numbers
    _no_network(monkeypatch)
    monkeypatch.setattr(C, "load_spec_target", lambda *a, **k: pytest.fail("loaded the target"))
    assert path.with_suffix(".probes.npz").is_file()  # the probes' predictions, kept beside
    monkeypatch.setattr(C, "_scores", lambda *a, **k: pytest.fail("fitted a probe again"))
    lines.clear()
    plan2 = C.plan_compare("syn_serengeti", ["supervised"], "tiny", label_fractions=[0.5, 1],
                           seeds=[0, 1, 2], out=tmp_path / "b", render=False,
                           runs_root=tmp_path / "runs")
    second = C.run_compare(plan2, progress=False, echo=lines.append)
    assert "cached for 1 of 1 backbones, probe predictions for 1" in "\n".join(lines)
    pd.testing.assert_frame_equal(first.runs.drop(columns="code_version"),
                                  second.runs.drop(columns="code_version"))
    assert (tmp_path / "b" / "summary.csv").is_file() and (tmp_path / "b" / "comparisons.csv").is_file()


def test_the_feature_key_changes_with_what_changes_features(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("camtrap_ssl.experiments.spec.backbone_sha256", lambda *a: "w1")
    plan = C.plan_compare("syn_serengeti", ["supervised"], "tiny", out=tmp_path / "o")
    spec = plan.specs[0]
    key = C.feature_path(spec)
    assert C.feature_path(spec.replace(seed=2, label_fraction=0.5)) == key  # the probe's, not the features'
    assert C.feature_path(spec.replace(strip=0.2)) != key
    assert C.feature_path(spec.replace(target="syn_ena24")) != key
    monkeypatch.setattr("camtrap_ssl.experiments.spec.backbone_sha256", lambda *a: "w2")
    assert C.feature_path(spec.replace()) != key  # other weights


def _features(train_x, train_y, val_x, val_y, n_classes):
    return C.Features(np.asarray(train_x, np.float32), np.asarray(train_y), np.asarray(val_x, np.float32),
                      np.asarray(val_y), [f"c{i}" for i in range(n_classes)], Path("mem"), True)


@pytest.mark.parametrize("kind", ["separable", "noise"])
def test_probes_score_a_known_case(kind, tmp_path):
    """One-hot features of the label give 100 % for both probes; pure noise about chance."""
    g = np.random.default_rng(0)
    ty, vy = np.arange(300) % 3, np.arange(150) % 3
    if kind == "separable":
        tx, vx = np.eye(3)[ty] + 0.01 * g.normal(size=(300, 3)), np.eye(3)[vy] + 0.01 * g.normal(size=(150, 3))
    else:
        tx, vx = g.normal(size=(300, 16)), g.normal(size=(150, 16))
    plan = C.plan_compare("syn_serengeti", ["supervised"], "tiny", label_fractions=[0.1, 1],
                          out=tmp_path)
    rows, preds = C.probe_rows(plan, plan.specs[0], _features(tx, ty, vx, vy, 3), "test")
    assert len(rows) == 2 * 2 * 3 and len(preds) == len(rows)
    top1 = np.array([r["top1"] for r in rows])
    if kind == "separable":
        assert top1.min() == 100.0
    else:
        assert 15 <= top1.mean() <= 52, top1  # chance is 33 %
    assert {r["n_labelled"] for r in rows if r["label_fraction"] == 0.1} == {30}


def test_knn_equals_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    g = np.random.default_rng(1)
    tx, vx = g.normal(size=(200, 12)), g.normal(size=(80, 12))
    ty = g.integers(0, 5, 200)
    ty[ty == 3] = 4  # a class without training images
    for k in (1, 5, 20):
        ours = knn_scores(tx, ty, vx, 5, k).argmax(1)
        ref = KNeighborsClassifier(k, metric="cosine", algorithm="brute").fit(tx, ty).predict(vx)
        np.testing.assert_array_equal(ours, ref)
        assert (ours != 3).sum() == len(vx)


def test_knn_k_never_exceeds_the_labelled_images_per_class():
    assert C.knn_k(np.arange(15)) == 1  # one image per class: 1-NN
    assert C.knn_k(np.repeat(np.arange(3), 10)) == 10
    assert C.knn_k(np.repeat(np.arange(3), 100)) == C.KNN_K


def test_bootstrap_metrics_match_the_fine_tuning_metrics():
    g = np.random.default_rng(2)
    y, pred = g.integers(0, 6, 300), g.integers(0, 6, 300)
    y[y == 5] = 0  # a class absent from the labels
    idx = g.integers(0, 300, size=(4, 300))
    vals = S.metric_values(pred, y, 6, idx)
    for b in range(4):
        cm = M.confusion_matrix(y[idx[b]], pred[idx[b]], 6)
        assert vals["macro_f1"][b] == pytest.approx(M.macro_f1(cm))
        assert vals["balanced_acc"][b] == pytest.approx(M.balanced_accuracy(cm))
        assert vals["top1"][b] == pytest.approx(100 * (y[idx[b]] == pred[idx[b]]).mean())


def _runs(cells):
    """A runs table from ``{(backbone, paradigm, protocol, share): [top1 per seed]}``."""
    rows = []
    for (b, par, prot, f), values in cells.items():
        for s, v in enumerate(values):
            rows.append({"backbone": b, "method": b, "paradigm": par, "family": None,
                         "architecture": "r", "protocol": prot, "label_fraction": f, "seed": s,
                         "top1": v, "macro_f1": v, "balanced_acc": v, "row": len(rows)})
    return pd.DataFrame(rows)


def test_verdicts_are_holm_adjusted_over_the_whole_family():
    g = np.random.default_rng(3)
    base = [70.0, 72.0, 71.0, 69.0]
    cells = {("sl", "SL", "linear probe", 0.1): base,
             ("big", "SSL", "linear probe", 0.1): [b + 10 + d for b, d in zip(base, [0.2, -0.1, 0.1, 0])],
             ("same", "SSL", "linear probe", 0.1): [b + d for b, d in zip(base, [1, -1, 0.5, -0.5])]}
    # a lone comparison that a test alone would call (p about 0.02) ...
    cells[("edge", "SSL", "linear probe", 0.1)] = [b + d for b, d in zip(base, [2.0, 1.0, 3.0, 1.5])]
    # ... in a family with many more: Holm does not
    for i in range(8):
        cells[("sl", "SL", "kNN", 0.1 * (i + 1))] = base
        cells[(f"n{i}", "SSL", "kNN", 0.1 * (i + 1))] = list(np.array(base) + g.normal(0, 2, 4))
    runs = _runs(cells)
    comp = S.comparisons(runs, {}, "top1", 0.05)
    got = dict(zip(comp["backbone"] + "/" + comp["protocol"], comp["verdict"]))
    assert got["big/linear probe"] == "better" and got["same/linear probe"] == "cannot tell"
    edge = comp[comp["backbone"] == "edge"].iloc[0]
    assert edge["p"] < 0.05 and edge["verdict"] == "cannot tell"
    m = len(comp)
    np.testing.assert_allclose(comp["p_holm"], holm(comp["p"].to_numpy())[1])
    assert comp["family"].str.contains(f"all {m} SSL-vs-SL comparisons").sum() == m
    assert comp["family"].str.contains("Holm").sum() == m
    assert (comp["level"] == 1 - 0.05 / m).sum() == m
    flipped = S.comparisons(runs.assign(top1=lambda d: np.where(d["paradigm"] == "SL", d["top1"] + 20, d["top1"])),
                            {}, "top1", 0.05)
    assert dict(zip(flipped["backbone"], flipped["verdict"]))["big"] == "worse"


def test_deterministic_cells_are_judged_over_validation_images():
    y = np.arange(400) % 4
    good = y.copy()
    bad = np.where(np.arange(400) % 2 == 0, y, (y + 1) % 4)  # half right
    runs = _runs({("sl", "SL", "linear probe", 1.0): [50.0] * 3,
                  ("ssl", "SSL", "linear probe", 1.0): [100.0] * 3})
    preds = {"labels": y, "classes": np.array(list("abcd")),
             **{i: bad for i in range(3)}, **{i: good for i in range(3, 6)}}
    comp = S.comparisons(runs, preds, "top1")
    assert comp["test"].iloc[0].startswith("paired bootstrap over 400 validation images")
    assert comp["verdict"].iloc[0] == "better" and comp["difference"].iloc[0] == pytest.approx(50)
    summary = S.summarise(runs, preds)
    row = summary[summary["backbone"] == "sl"].iloc[0]
    assert row["interval"].startswith("bootstrap over 400 validation images")
    assert row["top1_low"] < 50 < row["top1_high"]
    seeds = S.summarise(runs.assign(top1=[49.0, 50, 51, 100, 100, 100]), {})
    assert seeds["interval"].tolist() == ["t over 3 seeds"] * 2


@pytest.mark.parametrize("kwargs, word", [
    ({"backbones": ["supervised", "mocov9"]}, "backbones='mocov9' is not allowed"),
    ({"target": "not_a_target"}, "target='not_a_target' is not allowed"),
    ({"label_fractions": [0.05, 1.5]}, "label_fractions=1.5 is not allowed"),
    ({"label_fractions": [0]}, r"label_fractions=0 is not allowed; .*\(0, 1\]"),
    ({"seeds": [0, 1]}, r"seeds=\[0, 1\] is not allowed; seeds must be at least 3"),
    ({"seeds": [0, 0, 1]}, "seeds=.* is not allowed"),
    ({"knn_k": 0}, "knn_k=0 is not allowed"),
    ({"metric": "auc"}, "metric='auc' is not allowed"),
])
def test_bad_input_is_refused_before_any_feature_extraction(kwargs, word, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    args = {"target": "syn_serengeti", "backbones": ["supervised"], "profile": "tiny",
            "out": tmp_path / "o", **kwargs}
    with pytest.raises(ValueError, match=word):
        C.plan_compare(**args)
    assert not (tmp_path / "o").exists()


def test_a_file_that_is_not_a_target_is_refused(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ValueError, match="target="):
        C.plan_compare(str(notes), ["supervised"], "tiny", out=tmp_path / "o")


def test_the_command_line_refuses_with_one_line(capsys, tmp_path):
    from camtrap_ssl.cli import main

    assert main(["compare", "--target", "syn_serengeti", "--seeds", "0,1", "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("camtrap-ssl compare: seeds=")


def test_default_backbones_follow_the_profile():
    assert C.default_backbones("demo") == ["supervised", "simclr", "barlowtwins", "swav",
                                           "deepclusterv2"]
    paper = C.default_backbones("paper")
    assert "supervised_r50" in paper and "simclrv2_r152_1x_sk1" in paper
    from camtrap_ssl.core.profiles import get_profile
    archs = {b: C.architecture(b, get_profile("paper")) for b in paper}
    assert archs["simclrv2_r152_1x_sk0"] == archs["supervised_r152"] == "ResNet-152"
    assert archs["swav_r50"] == archs["supervised_r50"] == "ResNet-50"


@pytest.mark.slow
def test_the_report_is_an_executed_page_with_its_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    plan = C.plan_compare("syn_serengeti", ["supervised", "simclr"], "tiny", out=tmp_path / "r",
                          runs_root=tmp_path / "runs")
    result = C.run_compare(plan, progress=False, echo=lambda *a: None)
    html = result.html.read_text()
    assert result.html == tmp_path / "r" / "compare_report.html"
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64', html)) >= 2
    assert "Traceback" not in html and "Holm" in html and "simclr" in html
    assert "report_tables(" not in html  # rendered without its code


def test_sequence_top1_is_the_mean_of_each_bursts_probabilities(tmp_path, monkeypatch):
    """Where the target has sequences, every probe row also carries its sequence-level top-1, the
    same number train.practice gives from the probe's probabilities; without sequences, none."""
    from camtrap_ssl.train.practice import sequence_scores

    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    plan = C.plan_compare("syn_serengeti", ["supervised"], "tiny", label_fractions=[1],
                          seeds=[0, 1, 2], out=tmp_path / "a", render=False,
                          runs_root=tmp_path / "runs")
    runs = C.run_compare(plan, progress=False, echo=lambda *a: None).runs
    feats = C.target_features(plan.specs[0], progress=False)
    assert feats.val_sequences is not None and len(feats.val_sequences) == len(feats.val_y)
    linear = runs[runs.protocol == "linear probe"].iloc[0]
    keep = np.arange(len(feats.train_y))  # all labels: every training image
    probs = C._probabilities("linear probe", C._scores("linear probe", feats, keep, 20))
    want = sequence_scores(probs.astype(np.float16).astype(np.float64), feats.val_y,
                           feats.val_sequences, feats.classes)["top1"]
    assert linear.seq_top1 == pytest.approx(want)
    assert runs.seq_top1.notna().sum() == len(runs)
    cifar = C.plan_compare("syn_cifar", ["supervised"], "tiny", label_fractions=[1],
                           seeds=[0, 1, 2], out=tmp_path / "c", render=False,
                           runs_root=tmp_path / "runs")
    no_seq = C.run_compare(cifar, progress=False, echo=lambda *a: None).runs
    assert len(no_seq) == 6 and no_seq.seq_top1.notna().sum() == 0
