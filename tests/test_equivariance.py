import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from camtrap_ssl.analysis import equivariance as eq
from toy_networks import CircularNet as Net


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(3, 3, 32, 32)


def test_circular_strided_net_is_shift_equivariant(images):
    torch.manual_seed(1)
    df = eq.equivariance_errors(Net(), images, transforms=["shift_x", "shift_y"])
    assert list(df["stride"][:4]) == [1, 2, 4, 8]
    assert list(df["input_shift"][:4]) == [1, 2, 4, 8]
    assert (df["error_mean"] < 1e-5).all() and (df["n_images"] == 3).all()
    # features do move (so the small error is not the trivial kind) ...
    assert (df["unmoved_mean"] > 1e-3).all()
    # ... and shifting by a non-multiple of the stride would not be exact: 2 cells is fine too
    df2 = eq.equivariance_errors(Net(), images, transforms=["shift_x"], shift_cells=2)
    assert list(df2["input_shift"]) == [2, 4, 8, 16] and (df2["error_mean"] < 1e-5).all()


def test_pointwise_net_is_equivariant_to_everything(images):
    torch.manual_seed(2)
    df = eq.equivariance_errors(Net(kernel=1, strides=(1, 1, 1, 1)), images)
    assert set(df["transform"]) == set(eq.EQUIVARIANCE_TRANSFORMS)
    assert len(df) == 4 * len(eq.EQUIVARIANCE_TRANSFORMS)
    assert (df["error_mean"] < 1e-5).all()
    assert (df["error_ratio"] < 1e-4).all()


def test_position_dependent_bias_breaks_equivariance(images):
    torch.manual_seed(3)
    df = eq.equivariance_errors(Net(kernel=1, strides=(1, 1, 1, 1), position_bias=(32, 32)),
                                images)
    assert (df["error_mean"] > 0.05).all()


def test_zero_padded_resnet_is_not_flip_equivariant():
    torch.manual_seed(4)
    model = resnet18(num_classes=5).eval()
    df = eq.equivariance_errors(model, torch.rand(2, 3, 64, 64), transforms=["flip_lr"])
    assert list(df["stride"]) == [4, 8, 16, 32]
    assert (df["error_mean"] > 1e-2).all()
    assert np.isfinite(df["shuffled_mean"]).all() and (df["error_ratio"] > 0).all()


def test_shift_too_large_for_feature_map_is_reported_not_faked():
    torch.manual_seed(5)
    model = Net(strides=(1, 2, 2, 8))  # layer4: 32 / 32 = 1 cell
    df = eq.equivariance_errors(model, torch.rand(2, 3, 32, 32), transforms=["shift_y"])
    last = df[df["block"] == "layer4"].iloc[0]
    assert np.isnan(last["error_mean"]) and "identity" in last["note"]
    assert (df[df["block"] != "layer4"]["error_mean"] < 1e-5).all()


def test_hooks_capture_all_blocks_in_one_forward(images):
    model = Net()
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        outs = eq.block_outputs(model, images)
        assert len(calls) == 1 and list(outs) == list(eq.BLOCKS)
        calls.clear()
        eq.equivariance_errors(model, images, transforms=["flip_lr", "rot90", "shift_x"])
    finally:
        handle.remove()
    # base + flip + rot90 + one pass per distinct stride (1, 2, 4, 8)
    assert len(calls) == 1 + 2 + 4
    assert eq.block_strides((32, 32), outs) == {"layer1": (1, 1), "layer2": (2, 2),
                                                "layer3": (4, 4), "layer4": (8, 8)}


def test_bad_arguments_raise(images):
    with pytest.raises(ValueError, match="transforms"):
        eq.equivariance_errors(Net(), images, transforms=["shear"])
    with pytest.raises(ValueError, match="square"):
        eq.equivariance_errors(Net(), torch.rand(1, 3, 32, 16), transforms=["rot90"])
    with pytest.raises(ValueError, match="layer1"):
        eq.equivariance_errors(nn.Conv2d(3, 3, 1), images)
    with pytest.raises(ValueError, match="shift_cells"):
        eq.equivariance_errors(Net(), images, shift_cells=0)


def test_plot_equivariance_has_a_line_per_model_and_panel_per_transform(images):
    torch.manual_seed(6)
    df = eq.equivariance_errors(Net(), images, transforms=["flip_lr", "shift_x"])
    dfs = {"ssl": df, "sl": df.assign(error_mean=df["error_mean"] * 2)}
    fig = eq.plot_equivariance(dfs)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["flip_lr", "shift_x"]
    assert all(len(a.containers) == 2 for a in axes)  # one errorbar line per model
    fig = eq.plot_equivariance(dfs, y="error_ratio")
    assert all(len(a.get_lines()) == 2 for a in fig.axes if a.get_visible())
    with pytest.raises(ValueError, match="transforms"):
        eq.plot_equivariance(dfs, transforms=["rot90"])
