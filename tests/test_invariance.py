import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from toy_networks import PositionalNet

from camtrap_ssl.analysis import invariance as inv
from camtrap_ssl.analysis import invariance_plots as invp


@pytest.fixture
def net():
    torch.manual_seed(0)
    return PositionalNet().eval()


def dot_image(size, row, col):
    img = torch.zeros(3, size, size)
    img[:, row, col] = 1.0
    return img


# ---------------------------------------------------------------------------- grids
def test_grids_are_the_studys():
    assert inv.TRANSFORM_FAMILIES["translate_x"] == (-100, -75, -50, -25, 0, 25, 50, 75, 100)
    assert inv.TRANSFORM_FAMILIES["translate_y"] == inv.TRANSFORM_FAMILIES["translate_x"]
    assert inv.TRANSFORM_FAMILIES["rotation"] == (0, 50, 100, 150, 200, 250, 300, 350)
    assert inv.TRANSFORM_FAMILIES["flip"] == (0, 1)
    assert inv.TRANSFORM_FAMILIES["zoom"] == (1, 2, 4, 6, 8, 10)
    assert set(inv.TRANSFORM_FAMILIES) == {"translate_x", "translate_y", "rotation", "flip", "zoom"}
    for fam, vals in inv.TRANSFORM_FAMILIES.items():
        assert inv.IDENTITY_VALUE[fam] in vals


# ---------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("family,expected", [("translate_x", (100, 125)),
                                             ("translate_y", (125, 100))])
def test_translation_moves_a_pixel_by_25_at_224(family, expected):
    out = inv.apply_transform(dot_image(224, 100, 100), family, 25)
    assert out.shape == (3, 224, 224)
    assert torch.nonzero(out[0]).tolist() == [list(expected)]
    assert out[0, expected[0], expected[1]] == 1.0
    back = inv.apply_transform(dot_image(224, 100, 100), family, -50)
    assert torch.nonzero(back[0]).tolist() == [[100, 50] if family == "translate_x" else [50, 100]]


def test_translation_scales_with_input_size():
    img = dot_image(64, 30, 30)
    rounded = inv.apply_transform(img, "translate_x", 25)  # 25 * 64/224 = 7.14 -> 7
    assert torch.nonzero(rounded[0]).tolist() == [[30, 37]]
    sub = inv.apply_transform(img, "translate_x", 25, subpixel=True)
    cols = torch.arange(64, dtype=torch.float32)
    centroid = (sub[0].sum(0) * cols).sum() / sub[0].sum()
    assert centroid.item() == pytest.approx(30 + 25 * 64 / 224, abs=1e-4)
    assert inv.translation_pixels(100, 64) == 29
    assert inv.translation_pixels(25, 64, subpixel=True) == pytest.approx(7.142857, abs=1e-5)


def test_translation_fill_modes():
    img = torch.full((3, 32, 32), 0.5)
    shifted = inv.apply_transform(img, "translate_x", 224 * 4 / 32)  # 4 px at 32 px
    assert torch.all(shifted[..., :4] == 0) and torch.all(shifted[..., 4:] == 0.5)
    border = inv.apply_transform(img, "translate_x", 224 * 4 / 32, fill="border")
    assert torch.all(border == 0.5)
    with pytest.raises(ValueError, match="fill"):
        inv.apply_transform(img, "translate_x", 25, fill="black")


@pytest.mark.parametrize("family", list(inv.TRANSFORM_FAMILIES))
def test_identity_values_return_the_image_exactly(family):
    torch.manual_seed(1)
    img = torch.rand(2, 3, 20, 20)
    assert torch.equal(inv.apply_transform(img, family, inv.IDENTITY_VALUE[family]), img)


def test_flip_twice_is_identity_and_mirrors():
    torch.manual_seed(2)
    img = torch.rand(3, 16, 16)
    once = inv.apply_transform(img, "flip", 1)
    assert torch.equal(once[..., 0], img[..., -1])
    assert torch.equal(inv.apply_transform(once, "flip", "left-right"), img)
    assert not torch.equal(once, img)


def test_rotation_is_counter_clockwise_about_the_centre():
    torch.manual_seed(3)
    img = torch.rand(3, 24, 24)
    # counter-clockwise as displayed, like torch.rot90 over (H, W) and torchvision's rotate
    assert torch.allclose(inv.apply_transform(img, "rotation", 90), torch.rot90(img, 1, (1, 2)),
                          atol=1e-5)
    # a bright square 40 px right of the centre turns 50 degrees counter-clockwise (upwards)
    dot = torch.zeros(3, 224, 224)
    dot[:, 111:113, 151:153] = 1.0  # centre of the square: (111.5, 151.5) = centre + (0, 40)
    out = inv.apply_transform(dot, "rotation", 50)[0]
    rows, cols = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    centroid = ((out * rows).sum() / out.sum(), (out * cols).sum() / out.sum())
    t = math.radians(50)
    assert centroid[0].item() == pytest.approx(111.5 - 40 * math.sin(t), abs=0.05)
    assert centroid[1].item() == pytest.approx(111.5 + 40 * math.cos(t), abs=0.05)
    ours = inv.apply_transform(img, "rotation", 50)
    # corners uncovered by a 50-degree turn are filled with zeros
    assert torch.all(ours[:, 0, 0] == 0)


def test_zoom_is_centre_crop_resized_back():
    torch.manual_seed(4)
    img = torch.rand(3, 32, 32)
    for k in (2, 4):
        side = 32 // k
        start = (32 - side) // 2
        crop = img[:, start:start + side, start:start + side]
        ref = F.interpolate(crop[None], size=(32, 32), mode="bilinear", align_corners=False)[0]
        out = inv.apply_transform(img, "zoom", k)
        # equal except the outermost ring, where the crop-then-resize clamps to the crop's edge
        # and the affine zoom reads the true neighbouring pixels
        assert torch.allclose(out[:, k:-k, k:-k], ref[:, k:-k, k:-k], atol=1e-5)


def test_transformed_batch_holds_every_value_of_the_family():
    img = dot_image(224, 112, 112)
    batch = inv.transformed_batch(img, "translate_x")
    assert batch.shape == (9, 3, 224, 224)
    for copy, v in zip(batch, inv.TRANSLATION_PX):
        assert torch.nonzero(copy[0]).tolist() == [[112, 112 + v]]


def test_bad_transform_arguments_raise():
    img = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="family"):
        inv.apply_transform(img, "shear", 1)
    with pytest.raises(ValueError, match="flip"):
        inv.apply_transform(img, "flip", 2)
    with pytest.raises(ValueError, match="zoom"):
        inv.apply_transform(img, "zoom", 0)
    with pytest.raises(ValueError, match="images"):
        inv.apply_transform(torch.rand(8, 8), "zoom", 2)


# ---------------------------------------------------------------------------- class selection
def _tables():
    ssl = {"zebra": (0.95, 0.9), "giraffe": (0.97, 0.96), "guineaFowl": (0.9, 0.92),
           "ostrich": (0.4, 0.5), "lionMale": (0.2, 0.1), "hyena": (0.25, 0.2),
           "eland": (0.6, 0.6)}
    sl = {"zebra": (0.93, 0.94), "giraffe": (0.92, 0.91), "guineaFowl": (0.5, 0.4),
          "ostrich": (0.9, 0.88), "lionMale": (0.3, 0.2), "hyena": (0.1, 0.05),
          "eland": (0.6, 0.6)}
    return ssl, sl


def test_select_classes_criteria_and_preference():
    ssl, sl = _tables()
    sel = inv.select_classes(ssl, sl, high=0.85, low=0.35)
    assert sel.chosen == {"both_high": "zebra", "ssl_only": "guineaFowl", "sl_only": "ostrich",
                          "both_low": "lionMale"}
    assert set(sel.choices.loc["both_high", "qualifying"]) == {"zebra", "giraffe"}
    assert set(sel.choices.loc["both_low", "qualifying"]) == {"lionMale", "hyena"}
    assert not sel.table.loc["eland", list(inv.CRITERIA)].any()
    # without a preference the best qualifying class wins
    sel = inv.select_classes(ssl, sl, high=0.85, low=0.35, prefer=None)
    assert sel.chosen["both_high"] == "giraffe"  # worst of four 0.91 beats zebra's 0.90
    assert sel.chosen["both_low"] == "hyena"  # best of four 0.25 is below lionMale's 0.30


def test_select_classes_best_qualifying_when_preferred_fails():
    ssl, sl = _tables()
    ssl["giraffe"] = (0.99, 0.99)
    sl["giraffe"] = (0.98, 0.97)
    sl["hyena"] = (0.1, 0.25)
    # the preferred zebra no longer qualifies: SL recall drops
    sl["zebra"] = (0.93, 0.5)
    sel = inv.select_classes(ssl, sl, high=0.85, low=0.35)
    assert sel.chosen["both_high"] == "giraffe"
    assert "does not qualify" in sel.choices.loc["both_high", "reason"]
    assert "zebra" in sel.choices.loc["ssl_only", "qualifying"]
    # both qualify for ssl_only; the preferred guineaFowl wins
    assert sel.chosen["ssl_only"] == "guineaFowl"
    del ssl["guineaFowl"]
    sel = inv.select_classes(ssl, sl, high=0.85, low=0.35)
    assert sel.chosen["ssl_only"] == "zebra"
    assert "lacks a value" in sel.choices.loc["ssl_only", "reason"]
    assert "guineaFowl" in sel.table.index and not sel.table.loc["guineaFowl", "ssl_only"]
    sel = inv.select_classes(ssl, sl, high=0.85, low=0.35, prefer=("okapi", None, None, None))
    assert "is not in the tables" in sel.choices.loc["both_high", "reason"]


def test_select_classes_none_when_nothing_qualifies():
    ssl = pd.DataFrame({"precision": [0.9, 0.8], "recall": [0.9, 0.8]}, index=["a", "b"])
    sl = pd.DataFrame({"class": ["a", "b"], "precision": [0.9, 0.8], "recall": [0.9, 0.8]})
    sel = inv.select_classes(ssl, sl, high=0.85, low=0.2)
    assert sel.chosen == {"both_high": "a", "ssl_only": None, "sl_only": None, "both_low": None}
    assert "no class qualifies" in sel.choices.loc["ssl_only", "reason"]
    assert sel.classes == ["a"]


def test_select_classes_default_thresholds_are_pooled_quantiles():
    ssl, sl = _tables()
    sel = inv.select_classes(ssl, sl)
    pooled = np.array([v for t in (ssl, sl) for pr in t.values() for v in pr])
    assert sel.high == pytest.approx(np.median(pooled))
    assert sel.low == pytest.approx(np.median(pooled))
    with pytest.raises(ValueError, match="low"):
        inv.select_classes(ssl, sl, high=0.3, low=0.5)
    with pytest.raises(ValueError, match="precision"):
        inv.select_classes(pd.DataFrame({"p": [1.0]}), sl)


# ---------------------------------------------------------------------------- curves
def test_invariance_curves_rows_and_zero_point(net):
    torch.manual_seed(5)
    images = torch.rand(3, 3, 32, 32)
    labels = [0, 2, 3]
    df = inv.invariance_curves(net, images, labels, class_names=["a", "b", "c", "d"],
                               progress=False, model_name="sl")
    n_values = sum(len(v) for v in inv.TRANSFORM_FAMILIES.values())
    assert len(df) == 3 * n_values
    assert set(df["class"]) == {"a", "c", "d"} and set(df["model"]) == {"sl"}
    with torch.no_grad():
        p = torch.softmax(net(images), 1)
    ident = df[[inv.is_identity(f, v) for f, v in zip(df["family"], df["value"])]]
    assert len(ident) == 3 * len(inv.TRANSFORM_FAMILIES)
    assert not ident["pred_changed"].any()
    assert np.allclose(ident["p_true"], ident["p_true_original"])
    for i, y in enumerate(labels):
        rows = ident[ident["image"] == i]
        assert np.allclose(rows["p_true"], p[i, y].item(), atol=1e-6)
        assert (rows["pred"] == int(p[i].argmax())).all()
    # transformed copies really change the input: this net is not invariant
    moved = df[~df.index.isin(ident.index)]
    assert (moved["p_true"] - moved["p_true_original"]).abs().max() > 1e-3
    # a transformed row matches the model on the transformed image
    row = df[(df["image"] == 1) & (df["family"] == "rotation") & (df["value"] == 150)].iloc[0]
    with torch.no_grad():
        q = torch.softmax(net(inv.apply_transform(images[1:2], "rotation", 150)), 1)
    assert row["p_true"] == pytest.approx(q[0, 2].item(), abs=1e-6)
    assert row["pred_changed"] == (int(q.argmax()) != int(p[1].argmax()))


@pytest.mark.parametrize("family", list(inv.TRANSFORM_FAMILIES))
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_forward_calls_per_family_are_batched(net, family, batch_size):
    calls = []
    handle = net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        inv.invariance_curves(net, torch.rand(1, 3, 32, 32), [1], families=[family],
                              batch_size=batch_size, progress=False)
    finally:
        handle.remove()
    n_values = len(inv.TRANSFORM_FAMILIES[family])
    assert len(calls) <= math.ceil(n_values / batch_size)
    assert sum(calls) == n_values


def test_invariance_curves_rejects_bad_input(net):
    with pytest.raises(ValueError, match="labels"):
        inv.invariance_curves(net, torch.rand(2, 3, 32, 32), [0], progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inv.invariance_curves(net, torch.rand(1, 3, 32, 32) * 255, [0], progress=False)
    with pytest.raises(ValueError, match="family"):
        inv.invariance_curves(net, torch.rand(1, 3, 32, 32), [0], families=["shear"],
                              progress=False)
    with pytest.raises(ValueError, match="out of range"):
        inv.invariance_curves(net, torch.rand(1, 3, 32, 32), [9], families=["flip"],
                              progress=False)


def _fake_curves(n_images, seed=0, model=None):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for fam in ("rotation", "flip"):
            for v in inv.TRANSFORM_FAMILIES[fam]:
                p0 = 0.8
                p = p0 if inv.is_identity(fam, v) else float(rng.uniform(0, 1))
                rows.append({"image": i, "label": 0, "class": "zebra", "family": fam,
                             "value": float(v), "p_true": p, "p_true_original": p0,
                             "pred": 0 if p > 0.5 else 1, "pred_original": 0,
                             "pred_changed": p <= 0.5, "correct": p > 0.5})
    df = pd.DataFrame(rows)
    if model:
        df.insert(0, "model", model)
    return df


def test_bootstrap_band_contains_mean_and_narrows():
    small = inv.bootstrap_band(_fake_curves(5), n_boot=500, seed=1)
    large = inv.bootstrap_band(_fake_curves(80), n_boot=500, seed=1)
    for band in (small, large):
        assert (band["low"] <= band["mean"] + 1e-12).all()
        assert (band["mean"] <= band["high"] + 1e-12).all()
    moved = lambda b: b[b["value"] != 0]  # noqa: E731
    assert (moved(large)["high"] - moved(large)["low"]).mean() < \
        0.6 * (moved(small)["high"] - moved(small)["low"]).mean()
    assert (small["n_images"] == 5).all()
    # the identity point has no spread
    ident = small[small["value"] == 0]
    assert np.allclose(ident["low"], 0.8) and np.allclose(ident["high"], 0.8)


def test_invariance_summary_definitions():
    curves = {"ssl": _fake_curves(10, seed=2), "sl": _fake_curves(10, seed=3)}
    summ = inv.invariance_summary(curves)
    assert set(summ["model"]) == {"ssl", "sl"} and set(summ["family"]) == {"rotation", "flip"}
    df = curves["ssl"]
    moved = df[(df["family"] == "rotation") & (df["value"] != 0)]
    row = summ[(summ["model"] == "ssl") & (summ["family"] == "rotation")].iloc[0]
    assert row["n"] == len(moved) == 10 * 7
    assert row["retained"] == pytest.approx(moved["p_true"].mean() / 0.8)
    assert row["delta_p_true"] == pytest.approx(moved["p_true"].mean() - 0.8)
    assert row["consistency"] == pytest.approx(1 - moved["pred_changed"].mean())


def test_plots_have_a_panel_per_class_and_a_curve_per_model(net):
    torch.manual_seed(6)
    images = torch.rand(4, 3, 32, 32)
    labels = [0, 0, 1, 1]
    fams = {"flip": None, "zoom": [1, 2]}
    dfs = {m: inv.invariance_curves(net, images, labels, families=fams, class_names=["x", "y"],
                                    progress=False) for m in ("ssl", "sl")}
    fig = invp.plot_invariance(dfs, "zoom", n_boot=50)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["x", "y"]
    assert all(len(a.get_lines()) == 3 for a in axes)  # two models + identity marker
    assert all(len(a.collections) == 2 for a in axes)  # two bands
    grid = invp.plot_invariance_grid(dfs, n_boot=50)
    assert len(grid.axes) == 2 * 2
    with pytest.raises(ValueError, match="classes"):
        invp.plot_invariance(dfs, "zoom", classes=["zebra"])


# ------------------------------------------------------------------ representation invariance
def centred_objects(n, size=32, margin=9, seed=0):
    """Random objects on black with a black margin: a zero-filled shift of up to ``margin`` px
    equals a cyclic shift, so a circular-padded network is exactly invariant to it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, size, size)
    x[:, :, margin:size - margin, margin:size - margin] = torch.rand(
        n, 3, size - 2 * margin, size - 2 * margin, generator=g)
    return x


def test_shift_invariant_network_scores_full_representation_invariance():
    from toy_networks import CircularNet

    torch.manual_seed(0)
    net = CircularNet(strides=(1, 1, 1, 1), width=6).eval()
    x = centred_objects(10)
    fams = {"translate_x": [-50, 50], "translate_y": [25, -25]}  # 7 and 4 px at 32 px
    df = inv.representation_invariance(net, x, [0] * 5 + [1] * 5, fams)
    assert np.allclose(df["similarity"], 1, atol=1e-5)
    assert np.allclose(df["relative"], 1, atol=1e-5)
    assert (df["other_class"] < 0.5).all()  # the score could have been low
    rot = inv.representation_invariance(net, x, [0] * 5 + [1] * 5, {"rotation": [50]})
    assert rot["similarity"].iloc[0] < 0.999  # not invariant to what it was not built for


def test_random_features_score_near_zero_relative_invariance():
    from toy_networks import RandomFeatureNet

    torch.manual_seed(1)
    net = RandomFeatureNet(size=32, channels=32)
    x = torch.rand(16, 3, 32, 32)
    df = inv.representation_invariance(net, x, [0, 1] * 8, {"flip": None, "zoom": [2]})
    assert (df["relative"].abs() < 0.25).all()


def test_representation_invariance_ignores_image_order_and_batch_size(net):
    torch.manual_seed(2)
    x, y = torch.rand(8, 3, 32, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    a = inv.representation_invariance(net, x, y, {"rotation": [50, 100]}, batch_size=64)
    perm = torch.randperm(8)
    b = inv.representation_invariance(net, x[perm], y[perm], {"rotation": [50, 100]},
                                      batch_size=3)
    pd.testing.assert_frame_equal(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="2 classes"):
        inv.representation_invariance(net, x, [0] * 8)


def test_empty_class_selection_falls_back_to_the_study_classes_in_the_target():
    weak = {c: (0.0, 0.0) for c in ("zebra", "gnu", "lionMale")}  # nothing high, nothing low
    sel = inv.select_classes(weak, weak, high=0.5, low=0.0)
    assert sel.classes == []
    classes, note = sel.classes_or_fallback(["empty", "gnu", "lionMale", "zebra"])
    assert classes == ["zebra", "lionMale"] and "no class met any criterion" in note
    classes, note = sel.classes_or_fallback(["a", "b", "c", "d", "e"])
    assert classes == ["a", "b", "c", "d"] and "first classes" in note
    good = inv.select_classes({"zebra": (0.9, 0.9), "gnu": (0.1, 0.1)},
                              {"zebra": (0.9, 0.9), "gnu": (0.1, 0.1)})
    assert good.classes_or_fallback(["zebra", "gnu"]) == (good.classes, None)
