"""Tests for camtrap_ssl.analysis.filters on a model whose winning filters are known by construction."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camtrap_ssl.analysis.filters import (
    FilterResult,
    filter_agreement,
    final_conv_maps,
    most_activated_filters,
    plot_most_activated,
    winners_table,
)


def permuting_conv(perm, n_in, stride=1):
    """1x1 conv whose output channel c copies input channel perm[c] (0 where perm[c] is None)."""
    conv = nn.Conv2d(n_in, len(perm), 1, stride=stride, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c, src in enumerate(perm):
            if src is not None:
                conv.weight[c, src] = 1.0
    return nn.Sequential(conv, nn.ReLU())


class ColourNet(nn.Module):
    """layer1 copies R, G, B to channels 0-2 (+2 dead channels); later blocks permute them, so
    the winner of each block is the image's dominant colour, moved to a known index."""

    def __init__(self):
        super().__init__()
        self.layer1 = permuting_conv([0, 1, 2, None, None], 3)
        self.layer2 = permuting_conv([None, 2, 0, 1], 5)  # R -> 2, G -> 3, B -> 1
        self.layer3 = permuting_conv([1, 2, 3, None, None, None], 4, stride=2)  # R->1 G->2 B->0
        self.layer4 = permuting_conv([None, None, None, None, None, 2, 1, 0], 6)  # R->6 G->5 B->7
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean((2, 3)))


def colour_images():
    x = torch.full((3, 3, 8, 8), 0.1)
    x[0, 0], x[1, 1], x[2, 2] = 0.9, 0.8, 0.7  # red, green, blue dominant
    x[0, 0, :2] = 0.3  # a spatial pattern, so the map is not constant
    return x


def test_most_activated_filter_is_the_designed_channel():
    x = colour_images()
    res = most_activated_filters(ColourNet(), x, batch_size=2)  # two batches
    expected = {"layer1": [0, 1, 2], "layer2": [2, 3, 1], "layer3": [1, 2, 0],
                "layer4": [6, 5, 7]}
    for layer, idx in expected.items():
        assert res.indices[layer].tolist() == idx, layer
        assert res.maps[layer].shape == (3, 8, 8)  # upsampled to the image for overlays
    assert res.n_channels == {"layer1": 5, "layer2": 4, "layer3": 6, "layer4": 8}
    # layer1 copies the red channel: its map is the red plane itself
    assert torch.allclose(res.maps["layer1"][0], x[0, 0])
    assert torch.allclose(res.scores["layer1"], torch.tensor([x[0, 0].mean(), 0.8, 0.7]))
    # layer3 halves the resolution; the map comes back to 8x8 by bilinear upsampling
    small = x[0, 0, ::2, ::2]
    up = F.interpolate(small[None, None], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(res.maps["layer3"][0], up[0, 0])
    assert winners_table(res).loc[1, "layer4"] == 5


def test_filter_agreement_counts():
    ssl = FilterResult(("layer1", "layer2"), {"layer1": torch.tensor([5, 5, 5, 5]),
                                              "layer2": torch.tensor([2, 1, 2, 1])},
                       {}, {}, {"layer1": 8, "layer2": 8})
    sl = FilterResult(("layer1",), {"layer1": torch.tensor([1, 2, 1, 3])}, {}, {}, {"layer1": 8})
    table = filter_agreement({"SSL": ssl, "SL": sl}).set_index(["model", "layer"])
    assert table.loc[("SSL", "layer1"), "top_share"] == 1.0
    assert table.loc[("SSL", "layer1"), "n_distinct"] == 1
    assert table.loc[("SSL", "layer1"), "top_filter"] == 5
    assert table.loc[("SSL", "layer2"), "top_filter"] == 1  # tie -> smallest index
    assert table.loc[("SSL", "layer2"), "top_share"] == 0.5
    assert table.loc[("SL", "layer1"), "top_filter"] == 1
    assert table.loc[("SL", "layer1"), "top_share"] == 0.5
    assert table.loc[("SL", "layer1"), "n_distinct"] == 3
    assert len(filter_agreement(ssl)) == 2  # a single result works too


def test_final_conv_maps_ranks_channels():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0], x[0, 1], x[0, 2] = 0.2, 0.9, 0.5
    maps = final_conv_maps(ColourNet(), x, top_k=3, layer="layer1")
    assert maps.indices.tolist() == [[1, 2, 0]]
    assert torch.allclose(maps.scores, torch.tensor([[0.9, 0.5, 0.2]]))
    assert maps.maps.shape == (1, 3, 8, 8) and maps.maps_small.shape == (1, 3, 8, 8)
    m4 = final_conv_maps(ColourNet(), x, top_k=2)  # default: layer4, at its own 4x4 resolution
    assert m4.indices.tolist() == [[5, 7]] and m4.maps_small.shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="8 channels"):
        final_conv_maps(ColourNet(), x, top_k=9)


def test_errors_and_plot():
    x = colour_images()
    with pytest.raises(ValueError, match="layer4"):
        most_activated_filters(ColourNet(), x, layers=("layer5",))
    with pytest.raises(ValueError, match="top_k"):
        final_conv_maps(ColourNet(), x, top_k=0)
    res = most_activated_filters(ColourNet(), x)
    fig = plot_most_activated(x, res, max_images=2)
    assert len(fig.axes) == 2 * 5
    assert fig.axes[1].get_title() == "layer1 #0"


def test_a_channel_with_a_large_offset_wins_raw_but_not_standardised():
    # channel 0 carries a BN-like offset of 10 and no information; channels 1..7 respond to
    # the image (each image excites a different one): raw winners agree, standardised do not
    g = torch.Generator().manual_seed(0)
    n, c = 40, 8
    means = torch.rand(n, c, generator=g) * 0.1
    means[:, 0] += 10.0
    means[torch.arange(n), 1 + torch.arange(n) % (c - 1)] += 1.0
    res = FilterResult(("layer4",), {"layer4": means.argmax(1)}, {}, {}, {"layer4": c},
                       {"layer4": means})
    row = filter_agreement(res, n_perm=100).iloc[0]
    assert row["top_share"] == 1.0 and row["top_filter"] == 0
    assert row["z_top_share"] < 0.25 and row["z_top_filter"] != 0
    assert abs(row["z_top_share"] - row["perm_top_share"]) < 0.15  # no better than chance

