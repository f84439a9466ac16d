"""Equivariance per block, checked on networks whose answer is known by construction."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from toy_networks import CircularNet, MirroredFilterNet, RandomFeatureNet

from camtrap_ssl.analysis import equivariance as eq


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(8, 3, 32, 32)


LABELS = [0, 0, 1, 1, 2, 2, 3, 3]


def test_mirrored_filters_are_flip_equivariant_only_with_a_learned_map(images):
    torch.manual_seed(1)
    df = eq.equivariance_errors(MirroredFilterNet(), images, LABELS, ["flip:1"])
    assert len(df) == 4 and df["note"].isna().all()
    # M_g = the channel-pair swap is learned from the fit half and holds on the held-out half
    assert (df["error_learned_mean"] < 0.01).all()
    assert (df["ratio_learned"] < 0.02).all()
    # channel by channel the same network looks far from equivariant
    assert (df["error_fixed_mean"] > 0.3).all() and (df["ratio_fixed"] > 0.5).all()


def test_cyclic_shifts_are_exact_only_at_multiples_of_the_stride(images):
    torch.manual_seed(2)
    net = CircularNet(strides=(1, 2, 2, 2))  # strides 1, 2, 4, 8
    df = eq.equivariance_errors(net, images, LABELS, ["cyclic_x:8", "cyclic_x:7"])
    exact = df[df["transform"] == "cyclic_x:8"]
    assert list(exact["stride"]) == [1, 2, 4, 8] and list(exact["shift_cells"]) == [8, 4, 2, 1]
    assert (exact["error_fixed_mean"] < 1e-5).all()
    assert (exact["unmoved"] > 1e-2).all()  # the features did move: not a trivial zero
    odd = df[df["transform"] == "cyclic_x:7"].set_index("block")
    assert odd.loc["layer1", "error_fixed_mean"] < 1e-5  # stride 1: 7 px is 7 whole cells
    # strided blocks see 7/2, 7/4, 7/8 of a cell: subsampling aliasing shows
    assert (odd.loc[["layer2", "layer3", "layer4"], "error_fixed_mean"] > 1e-2).all()


def test_random_features_score_near_the_other_class_baseline(images):
    torch.manual_seed(3)
    net = RandomFeatureNet(size=32, channels=8)
    df = eq.equivariance_errors(net, images, LABELS, ["flip:1", "cyclic_y:5"])
    assert np.allclose(df["ratio_fixed"], 1, atol=0.15)
    assert (df["ratio_learned"] > 0.8).all()


def test_measures_do_not_depend_on_image_order_or_batch_size(images):
    torch.manual_seed(4)
    net = CircularNet(strides=(1, 2, 2, 2))
    ts = ["translate_x:25", "rotation:50", "zoom:2"]
    a = eq.equivariance_errors(net, images, LABELS, ts, batch_size=32)
    perm = torch.randperm(len(images))
    b = eq.equivariance_errors(net, images[perm], np.asarray(LABELS)[perm.numpy()], ts,
                               batch_size=3)
    num = a.select_dtypes("number").columns
    pd.testing.assert_frame_equal(a[num], b[num], rtol=1e-6, atol=1e-9)
    # and the other-class baseline uses other classes only: same-class pairs differ from it
    assert not np.allclose(a["other_class_fixed"], a["same_class_fixed"])


def test_same_class_baseline_of_identical_images_equals_the_error():
    torch.manual_seed(5)
    one, two = torch.rand(2, 3, 32, 32)
    x = torch.stack([one, one, one, one, two, two, two, two])
    df = eq.equivariance_errors(CircularNet(), x, [0, 0, 0, 0, 1, 1, 1, 1], ["flip:1"])
    assert np.allclose(df["same_class_fixed"], df["error_fixed_mean"])


def test_zero_filled_transforms_compare_defined_positions_only(images):
    df = eq.equivariance_errors(CircularNet(), images, LABELS, ["translate_x:100", "rotation:50"])
    l1 = df[df["block"] == "layer1"].set_index("transform")
    assert l1.loc["translate_x:100", "n_positions"] < 32 * 32
    assert l1.loc["rotation:50", "n_positions"] < 32 * 32
    assert (df["n_positions"] > 0).all() or df["note"].notna().any()


def test_zero_padded_resnet_is_not_flip_equivariant_channel_by_channel():
    torch.manual_seed(4)
    model = resnet18(num_classes=5).eval()
    df = eq.equivariance_errors(model, torch.rand(4, 3, 64, 64), None, ["flip:1"])
    assert list(df["stride"]) == [4, 8, 16, 32]
    assert (df["error_fixed_mean"] > 1e-2).all() and (df["ratio_fixed"] > 0).all()


def test_bad_arguments_raise(images):
    with pytest.raises(ValueError, match="family 'shear' unknown"):
        eq.equivariance_errors(CircularNet(), images, LABELS, ["shear:3"])
    with pytest.raises(ValueError, match="family:value"):
        eq.equivariance_errors(CircularNet(), images, LABELS, ["flip"])
    with pytest.raises(ValueError, match="identity"):
        eq.equivariance_errors(CircularNet(), images, LABELS, ["zoom:1"])
    with pytest.raises(ValueError, match="square"):
        eq.equivariance_errors(CircularNet(), torch.rand(4, 3, 32, 16), None, ["rotation:90"])
    with pytest.raises(ValueError, match="layer1"):
        eq.equivariance_errors(nn.Conv2d(3, 3, 1), images, LABELS, ["flip:1"])
    with pytest.raises(ValueError, match=">= 4"):
        eq.equivariance_errors(CircularNet(), images[:3], None, ["flip:1"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        eq.equivariance_errors(CircularNet(), images * 3, LABELS, ["flip:1"])


def test_hooks_capture_all_blocks_in_one_forward(images):
    model = CircularNet()
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        outs = eq.block_outputs(model, images)
        assert len(calls) == 1 and list(outs) == ["layer1", "layer2", "layer3", "layer4"]
        calls.clear()
        eq.equivariance_errors(model, images, LABELS, ["flip:1", "rotation:90"], batch_size=8)
    finally:
        handle.remove()
    assert len(calls) == 1 + 2  # base + one pass per transformation


def test_plot_equivariance_has_a_line_per_model_and_panel_per_transform(images):
    df = eq.equivariance_errors(CircularNet(), images, LABELS, ["flip:1", "cyclic_x:8"])
    dfs = {"ssl": df, "sl": df.assign(ratio_learned=df["ratio_learned"] * 2)}
    fig = eq.plot_equivariance(dfs)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["flip:1", "cyclic_x:8"]
    assert all(len(a.get_lines()) == 3 for a in axes)  # two models + the level 1 line
    fig = eq.plot_equivariance(dfs, y="error_fixed_mean")
    assert all(len(a.containers) == 2 for a in fig.axes if a.get_visible())
    with pytest.raises(ValueError, match="transforms"):
        eq.plot_equivariance(dfs, transforms=["rotation:90"])
