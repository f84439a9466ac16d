"""RQ1's controlled axes: the domain-distance family, label shares, the in-domain pool, probes,
budget snapshots and the answer's logic, each on a case whose answer is known by construction."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from camtrap_ssl.data import synthetic
from camtrap_ssl.data.datasets import (
    ArrayDataset,
    stratified_fraction,
    with_label_fraction,
)
from camtrap_ssl.data.embedded import camtrap_pool, load_target, validation_sites
from camtrap_ssl.data.synthetic.camtrap import SERENGETI, family_spec
from camtrap_ssl.experiments import backbones as B
from camtrap_ssl.studies import rq1


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """The five distances of the family on the tiny profile: {distance: (json doc, folder)}."""
    cache = tmp_path_factory.mktemp("family")
    out = {}
    for d in synthetic.FAMILY_DISTANCES:
        path = synthetic.camtrap_world(family_spec(d), "tiny", cache_dir=cache, n_images=160)
        out[d] = (json.loads(path.read_text()), path.parent)
    out["serengeti"] = synthetic.camtrap_world("serengeti", "tiny", cache_dir=cache)
    return out


def _boxes(doc):
    """(bbox height share, |bbox centre x - middle| share) of every annotated animal."""
    size = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
    out = []
    for a in doc["annotations"]:
        if "bbox" in a:
            w, h = size[a["image_id"]]
            x, _, bw, bh = a["bbox"]
            out.append((bh / h, abs(x + bw / 2 - w / 2) / w))
    return np.array(out)


def _night_share(doc, folder):
    """Share of frames that are exactly grey (the infrared renderer's R = G = B)."""
    grey = 0
    for im in doc["images"]:
        a = np.asarray(Image.open(folder / im["file_name"]).convert("RGB"), dtype=int)
        a = a[: int(0.85 * a.shape[0])]  # above the strip
        grey += np.abs(a[..., 0] - a[..., 1]).mean() < 3 and np.abs(a[..., 1] - a[..., 2]).mean() < 3
    return grey / len(doc["images"])


def _same_site_correlation(doc, folder):
    """Median correlation of the top third (sky, horizon) between frames of one site."""
    by_site: dict = {}
    for im in doc["images"]:
        if im["frame_num"] == 0:
            by_site.setdefault(im["location"], []).append(im)
    corr = []
    for ims in by_site.values():
        tops = [np.asarray(Image.open(folder / im["file_name"]).convert("L"), float)[:16].ravel()
                for im in ims[:6]]
        corr += [np.corrcoef(a, b)[0, 1] for i, a in enumerate(tops) for b in tops[i + 1:]]
    return float(np.nanmedian(corr))


def test_far_end_of_the_family_is_the_serengeti_stand_in(family):
    assert family_spec(4) == SERENGETI  # the generator settings, field by field
    doc4, _ = family[4]
    ser = json.loads(family["serengeti"].read_text())
    assert doc4["images"] == ser["images"] and doc4["annotations"] == ser["annotations"]


def test_distance_zero_is_source_like(family):
    doc, folder = family[0]
    spec = family_spec(0)
    assert not (spec.small_animals or spec.off_centre or spec.site_backgrounds) and spec.night_share == 0
    heights, offsets = _boxes(doc).T
    # the source world frames objects at 0.5-0.85 of the height, centred within +-0.1
    assert np.median(heights) > 0.4 and offsets.max() < 0.2
    assert _night_share(doc, folder) == 0
    # every frame holds its animal: no sequence label on a frame the animal left
    labelled = {a["image_id"] for a in doc["annotations"] if "bbox" in a}
    empty_cat = next(c["id"] for c in doc["categories"] if c["name"] == "empty")
    animal = {a["image_id"] for a in doc["annotations"] if a["category_id"] != empty_cat}
    assert animal <= labelled


def test_each_step_switches_on_what_it_says(family):
    h0, _ = _boxes(family[0][0]).T
    h1, o1 = _boxes(family[1][0]).T
    h2, o2 = _boxes(family[2][0]).T
    assert np.median(h1) < 0.75 * np.median(h0)  # 1: small animals
    assert o1.max() < 0.2 and np.mean(o2) > 2 * np.mean(o1)  # 2: off-centre
    # 2 also makes animals move: some sequence-labelled frames no longer show the animal
    doc2 = family[2][0]
    empty_cat = next(c["id"] for c in doc2["categories"] if c["name"] == "empty")
    left = [a for a in doc2["annotations"] if a["category_id"] != empty_cat and "bbox" not in a]
    assert left
    # 3: fixed camera sites: frames of one site share their background, fresh ones do not
    assert _same_site_correlation(*family[3]) > 0.8 > 0.5 > _same_site_correlation(*family[2])
    # 4: night infrared, in about the Serengeti stand-in's share of the sequences
    assert _night_share(*family[3]) == 0
    assert 0.15 < _night_share(*family[4]) < 0.55
    # every step keeps the plan: the same frames, sites and labels
    ids = [[(im["id"], im["location"]) for im in family[d][0]["images"]] for d in range(5)]
    assert all(i == ids[0] for i in ids)


def test_family_distance_is_checked():
    with pytest.raises(ValueError, match=r"distance=5; allowed: \[0, 1, 2, 3, 4\]"):
        family_spec(5)


def test_label_fractions_are_stratified_and_nested():
    labels = np.repeat(np.arange(4), [200, 60, 20, 3])  # a long tail
    small, mid, full = (stratified_fraction(labels, f, seed=7) for f in (0.05, 0.2, 1.0))
    assert set(small) < set(mid) < set(full) and len(full) == len(labels)
    for c, n in enumerate([200, 60, 20, 3]):
        assert (labels[small] == c).sum() == max(1, int(np.ceil(0.05 * n)))
        assert (labels[mid] == c).sum() == max(1, int(np.ceil(0.2 * n)))
    assert not np.array_equal(small, stratified_fraction(labels, 0.05, seed=8))  # the seed draws
    with pytest.raises(ValueError, match="label_fraction=0"):
        stratified_fraction(labels, 0, 0)


def test_a_label_share_keeps_the_steps_of_the_whole_set():
    ds = ArrayDataset(torch.zeros(100, 3, 4, 4, dtype=torch.uint8), torch.arange(100) % 5)
    sub, rec = with_label_fraction(ds, 0.2, seed=0)
    assert rec["n_labelled"] == 20 and rec["repeats"] == 5 and len(sub) == 100
    assert torch.equal(torch.bincount(sub.labels), torch.full((5,), 20))
    x, y = sub.get_batch(torch.tensor([0, 99]))
    assert x.shape == (2, 3, 4, 4) and torch.equal(y, sub.labels[[0, 99]])


def test_in_domain_pool_shares_no_site_with_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path))
    images, ident = camtrap_pool("tiny", progress=False)
    held_out = set(validation_sites("tiny"))
    assert held_out and not held_out & set(ident["sites"])
    pool_json = [p for p in tmp_path.glob("serengeti-tiny-*/serengeti.json")
                 if json.loads(p.read_text())["images"][0]["location"] in ident["sites"]
                 and len(json.loads(p.read_text())["images"]) == 240]
    assert pool_json, "the pool world is in the cache"
    locations = {im["location"] for im in json.loads(pool_json[0].read_text())["images"]}
    assert locations <= set(ident["sites"]) and not locations & held_out
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    # other sequences than the target's: no pool frame equals a training frame
    target = load_target("syn_serengeti", "tiny")
    train = target.train.images.permute(0, 2, 3, 1).numpy()
    assert not any((train == im).all(axis=(1, 2, 3)).any() for im in images[:20])


def test_embedded_names_parse_and_refuse():
    assert B.parse_embedded("swav") == ("swav", "source", 100)
    assert B.parse_embedded("simclr.camtrap_b50") == ("simclr", "camtrap", 50)
    assert B.parse_embedded("swav.b25") == ("swav", "source", 25)
    for name in B.embedded_names():  # one spelling per backbone, and back
        assert B.embedded_name(*B.parse_embedded(name)) == name
    for bad in ("supervised.camtrap", "simclr.b30", "simclr.beach", "resnet50", "simclr.b50_camtrap",
                "simclr.", "simclr-camtrap@50"):
        assert B.parse_embedded(bad) is None
    assert B.snapshot_epochs(20) == {25: 5, 50: 10} and B.snapshot_epochs(1) == {25: 1, 50: 1}
    assert B.snapshot_path("/x/demo_swav.pt", 25) == Path("/x/demo_swav.b25.pt")
    assert B.snapshot_path("/x/demo_simclr.camtrap.pt", 50) == Path("/x/demo_simclr.camtrap_b50.pt")
    with pytest.raises(ValueError, match="needs labels"):
        B.pretrain_backbone("supervised", "tiny", 0, "/nonexistent/x.pt", pool="camtrap")


def test_budget_snapshots_are_the_run_after_that_many_epochs(tmp_path):
    from camtrap_ssl.models.weights import load_checkpoint
    from camtrap_ssl.pretrain.loop import PretrainConfig, pretrain

    g = np.random.default_rng(0)
    images = g.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    cfg = PretrainConfig(method="simclr", arch="resnet10_w0125", epochs=3, batch_size=32,
                         input_size=16, precision="fp32")
    snaps = {tmp_path / "a@1.pt": 1, tmp_path / "b@1.pt": 1, tmp_path / "a@2.pt": 2}
    pretrain(cfg, images, None, tmp_path / "a.pt", progress=False, snapshots=snaps)
    one, also, two, end = (load_checkpoint(tmp_path / n) for n in ("a@1.pt", "b@1.pt", "a@2.pt", "a.pt"))
    assert [c["record"]["epochs_done"] for c in (one, two, end)] == [1, 2, 3]
    assert all(torch.equal(one["state_dict"][k], also["state_dict"][k]) for k in one["state_dict"])
    # a 1-epoch snapshot is the state a run stopped after one epoch resumes from
    short = dict(asdict(cfg), epochs=3)
    pretrain(PretrainConfig(**short), images, None, tmp_path / "c.pt", progress=False,
             max_seconds=0.0)  # stops after its first epoch
    stopped = load_checkpoint(tmp_path / "c.pt")
    assert stopped["record"]["epochs_done"] == 1
    assert all(torch.equal(stopped["state_dict"][k], one["state_dict"][k]) for k in one["state_dict"])
    assert not torch.equal(one["state_dict"]["conv1.weight"], end["state_dict"]["conv1.weight"])
    with pytest.raises(ValueError, match=r"snapshots at epochs \[4\]"):
        pretrain(cfg, images, None, tmp_path / "d.pt", progress=False, snapshots={tmp_path / "e": 4})


def _diffs(values: dict, axis: str = "distance", backbone: str = "swav") -> pd.DataFrame:
    """Crafted paired differences: condition -> per-seed SSL - SL top-1 differences, each
    condition its own runs (named after it)."""
    from camtrap_ssl.core import intervals
    rows = []
    for cond, d in values.items():
        iv = intervals.t_interval(d)
        rows.append({"axis": axis, "condition": cond, "backbone": backbone, "minus": "supervised",
                     "seeds": ",".join(str(i) for i in range(len(d))), "top1_diff": iv.mean,
                     "top1_low": iv.low, "top1_high": iv.high, "top1_seed_diffs": tuple(d),
                     "run_dirs": " ".join(f"/runs/{backbone}/{cond}/{i}" for i in range(len(d)))})
    return pd.DataFrame(rows)


def test_answer_groups_conditions_by_what_the_adjusted_test_supports():
    table = rq1.answer_table(_diffs({"far": [5.0, 6.0, 7.0], "near": [-5.0, -6.0, -7.0],
                                     "mid": [-3.0, 1.0, 4.0], "probe": [2.0, 2.0, 2.0],
                                     "two seeds": [9.0, 10.0]}))
    outcome = dict(zip(table.condition, table.outcome))
    # Holm over 5 (the untestable ones count): far and near (p = 0.0091 each) are rejected at
    # 0.05/5 and 0.05/4; with unadjusted 95 % intervals "two seeds" (p = 0.033) would pass too
    assert outcome["far"] == "SSL better" and outcome["near"] == "SL better"
    assert outcome["mid"].startswith("cannot tell (Holm-adjusted p = 1.00")
    assert outcome["probe"].startswith("cannot tell (no seed variance")
    assert outcome["two seeds"] == "cannot tell (2 seeds)"
    assert table.loc[table.condition == "far", "Holm-adjusted p"].item() == "0.046"
    text = rq1.answer_sentences(table)
    lines = text.splitlines()
    ssl_line = next(line for line in lines if line.startswith("* **SSL better than SL"))
    assert "in 1 of the 5 distinct conditions" in ssl_line
    assert "far" in ssl_line and "near" not in ssl_line and "mid" not in ssl_line
    assert "near" in next(line for line in lines if line.startswith("* **SL better than SSL"))
    cannot = next(line for line in lines if line.startswith("* **Cannot tell"))
    assert "in 3 of the 5" in cannot and "2 of them with too few seeds" in cannot
    assert "mid" not in cannot  # unresolved conditions are counted, not listed
    assert "Holm 1979" in text and "5 distinct conditions" in text and "99 %" in text
    # which seeds the runs used, per set of seeds, in ranges
    assert "over seeds 0,1 (1 condition), 0-2 (4 conditions)." in text


def test_a_run_shared_by_several_axes_is_one_condition_of_the_family():
    """The d4 / all labels / source-pretrained / full-budget point sits on four axes: one test."""
    shared = [4.0, 5.0, 6.0]
    parts = [_diffs({"distance 4": shared, "distance 0": [1.0, -1.0, 0.5]}, "distance"),
             _diffs({"full fine-tuning, 100 % of labels": shared}, "labels"),
             _diffs({"pretrained on the source world": shared}, "domain"),
             _diffs({"100 % of pretraining": shared}, "budget")]
    runs = parts[0].run_dirs.iloc[0]
    for p in parts[1:]:
        p["run_dirs"] = runs  # the same runs, reached from another axis
    diffs = pd.concat(parts, ignore_index=True)
    fam = rq1.family(diffs)
    assert len(fam) == 2 and (fam.top1_family == 2).all()
    assert fam.axis.iloc[0] == "distance = labels = domain = budget"
    assert fam.condition.iloc[0] == ("distance 4 = full fine-tuning, 100 % of labels = "
                                     "pretrained on the source world = 100 % of pretraining")
    pd.testing.assert_frame_equal(rq1.family(fam), fam)  # idempotent
    # another SSL backbone on the same SL runs is a comparison of its own
    other = _diffs({"distance 4": shared}, "distance", backbone="simclr")
    assert len(rq1.family(pd.concat([diffs, other], ignore_index=True))) == 3


def test_answer_figure_has_one_row_per_distinct_condition():
    import matplotlib
    matplotlib.use("Agg")
    diffs = _diffs({"far": [5.0, 6.0, 7.0], "mid": [-3.0, 1.0, 4.0], "near": [-4.0, -5.0, -6.0]})
    fig = rq1.answer_figure(diffs)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["swav: far", "swav: mid", "swav: near"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "SSL better (1)", "SL better (1)", "cannot tell (1)"]
    assert "3 distinct conditions" in ax.get_title()


def test_linear_probe_on_a_target_is_recorded_and_reused(tmp_path, monkeypatch):
    from camtrap_ssl.experiments import probing
    from camtrap_ssl.experiments.spec import RunSpec

    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    spec = RunSpec("supervised", "syn_ena24", "tiny", seed=1, runs_root=tmp_path / "runs",
                   label_fraction=0.5)
    first = probing.linear_probe_run(spec)
    path = Path(first["path"])
    assert path.is_file() and path.name.startswith("probe-f0.5-seed1-")
    target = load_target("syn_ena24", "tiny")
    keep = stratified_fraction(np.asarray(target.train.labels), 0.5, 1)
    assert first["n_labelled"] == len(keep)  # the subset a fine-tuning run of seed 1 takes
    assert 0 <= first["top1"] <= 100
    monkeypatch.setattr(probing, "target_features",
                        lambda *a, **k: pytest.fail("recomputed a recorded probe"))
    assert probing.linear_probe_run(spec)["top1"] == first["top1"]


def test_linear_probe_scores_a_known_case(tmp_path, monkeypatch):
    """Features that are the one-hot label give 100 %; features of pure noise about chance."""
    from camtrap_ssl.experiments import probing
    from camtrap_ssl.experiments.spec import RunSpec

    g = np.random.default_rng(0)
    ty, vy = np.arange(300) % 3, np.arange(90) % 3
    classes = ["a", "b", "c"]
    for kind, expect in (("label", (100.0, 100.0)), ("noise", (15.0, 55.0))):
        if kind == "label":
            feats = (np.eye(3)[ty] + 0.01 * g.normal(size=(300, 3)), np.eye(3)[vy])
        else:
            feats = (g.normal(size=(300, 8)), g.normal(size=(90, 8)))
        monkeypatch.setattr(probing, "target_features", lambda *a, f=feats, **k: SimpleNamespace(
            train_x=f[0], train_y=ty, val_x=f[1], val_y=vy, classes=classes))
        spec = RunSpec("supervised", "syn_ena24", "tiny", seed=0, runs_root=tmp_path / kind,
                       label_fraction=0.1)
        monkeypatch.setattr(probing, "backbone_sha256", lambda *a: "fixed")
        out = probing.linear_probe_run(spec)
        assert expect[0] <= out["top1"] <= expect[1], (kind, out["top1"])
        assert out["n_labelled"] == 30  # 10 % of each class


@pytest.mark.parametrize("param, value, word", [
    ("distances", [0, 5], "domain distances"), ("label_fractions", [0.0, 1.0], "(0, 1]"),
    ("ssl_backbones", ["supervised"], "SSL pretraining methods"),
    ("pretraining_budgets", [30], "pretraining budgets"), ("in_domain", [], "non-empty")])
def test_rq1_parameters_are_checked_before_any_run(param, value, word):
    from camtrap_ssl.studies import params as studies
    with pytest.raises(ValueError, match=f"^study rq1: {param}=") as e:
        studies.check_request("rq1", {param: value})
    assert word in str(e.value)
