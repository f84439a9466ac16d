"""Localisation metrics: known answers on hand-made maps, ours against Quantus, blank maps."""
import warnings

import numpy as np
import pytest
import torch

from camtrap_ssl.analysis.backgrounds import mask_energy_share, pointing_game
from camtrap_ssl.analysis.localisation import (
    blank_maps,
    compare_models,
    localisation_scores,
    pointing_tolerance,
    warn_blank,
)

quantus = pytest.importorskip("quantus")


def inside_half_none(size=16):
    """Mask = top half. Map 0 all inside, map 1 half its mass (and half its pixels) inside,
    map 2 all outside."""
    mask = torch.zeros(3, 1, size, size, dtype=torch.bool)
    mask[:, :, : size // 2] = True
    maps = torch.zeros(3, 1, size, size)
    maps[0, :, : size // 2] = 1.0
    maps[1, :, : size // 2, : size // 2] = 1.0  # top-left quadrant: inside
    maps[1, :, size // 2:, : size // 2] = 1.0  # bottom-left quadrant: outside
    maps[2, :, size // 2:] = 1.0
    return maps, mask


def test_maps_all_half_none_inside_score_one_half_zero():
    maps, mask = inside_half_none()
    s = localisation_scores(maps, mask)
    np.testing.assert_allclose(s["relevance_mass"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(s["relevance_rank"], [1.0, 0.5, 0.0])
    # ours agrees with Quantus on the same maps
    np.testing.assert_allclose(mask_energy_share(maps, mask), s["relevance_mass"])
    pg = pointing_game(maps, mask)
    np.testing.assert_allclose(pg, s["pointing_game"])
    assert pg.tolist() == [1.0, 1.0, 0.0]  # a tie over both quadrants: any maximum counts


def test_pointing_game_ties_are_counted_like_quantus():
    g = torch.Generator().manual_seed(0)
    # 4x4 CAMs upsampled to 32 px: constant over 8x8 blocks, so maxima come in ties
    small = torch.randint(0, 3, (40, 1, 4, 4), generator=g).float()
    maps = torch.nn.functional.interpolate(small, size=32, mode="nearest")
    mask = torch.zeros(40, 1, 32, 32, dtype=torch.bool)
    for i in range(40):
        r, c = torch.randint(0, 24, (2,), generator=g)
        mask[i, :, r:r + 8, c:c + 8] = True
    ref = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=np.zeros((40, 1, 32, 32), np.float32), y_batch=np.zeros(40, int),
        a_batch=maps.numpy(), s_batch=mask.numpy().astype(float), channel_first=True)
    ours = pointing_game(maps, mask)
    live = ~np.isnan(ours)
    np.testing.assert_array_equal(ours[live], np.asarray(ref, dtype=float)[live])
    assert 0 < ours[live].mean() < 1


def test_tolerance_scales_15_px_at_224():
    assert pointing_tolerance(224) == 15 and pointing_tolerance(64) == 4
    assert pointing_tolerance(32) == 2
    with pytest.raises(ValueError, match="size"):
        pointing_tolerance(0)


def test_blank_maps_are_counted_scored_zero_and_warned():
    maps, mask = inside_half_none()
    maps[0] = 0.0  # the all-inside map goes blank
    assert blank_maps(maps).tolist() == [True, False, False]
    with pytest.warns(UserWarning, match="1 of 3 maps are blank"):
        assert warn_blank(maps, "Score-CAM") == 1
    table = compare_models({"SSL": {"scorecam": maps}}, mask, n_boot=50)
    row = table.set_index(["metric", "subset"]).loc[("relevance_mass", "all")]
    assert row["n"] == 3 and row["n_blank"] == 1
    assert row["mean"] == pytest.approx((0.0 + 0.5 + 0.0) / 3)  # not (0.5 + 0) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_blank(inside_half_none()[0], "x") == 0


def test_compare_models_splits_correct_and_incorrect_images():
    maps, mask = inside_half_none()
    table = compare_models({"SSL": {"gradcam": maps}, "SL": {"gradcam": maps.flip(-2)}}, mask,
                           correct={"SSL": [True, True, False], "SL": [False, False, True]},
                           n_boot=50)
    t = table.set_index(["model", "metric", "subset"])
    assert t.loc[("SSL", "relevance_mass", "correct"), "mean"] == pytest.approx(0.75)
    assert t.loc[("SSL", "relevance_mass", "incorrect"), "mean"] == pytest.approx(0.0)
    assert t.loc[("SL", "relevance_mass", "all"), "mean"] == pytest.approx(0.5)
    assert t.loc[("SSL", "relevance_mass", "all"), "chance"] == pytest.approx(0.5)
    assert set(table["subset"]) == {"all", "correct", "incorrect"}
    with pytest.raises(ValueError, match="correct lacks model"):
        compare_models({"SSL": {"gradcam": maps}}, mask, correct={"SL": [True] * 3})


class RegionModel(torch.nn.Module):
    """Class 0's logit reads only the 8x8 block at rows 16..24, columns 8..16 of a 32-px image."""

    def forward(self, x):
        region = x[:, :, 16:24, 8:16].mean((1, 2, 3))
        return torch.stack([20 * (region - 0.25), torch.zeros_like(region)], 1)


class CountingRegionModel(RegionModel):
    calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def test_deletion_auc_is_low_for_the_map_on_what_the_model_reads():
    from camtrap_ssl.analysis.localisation import deletion_auc

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x[:, :, 0, 0] = 0.0  # black is the image minimum
    on = torch.zeros(4, 1, 32, 32)
    on[:, :, 16:24, 8:16] = 1.0 + torch.rand(4, 1, 8, 8)
    off = torch.zeros(4, 1, 32, 32)
    off[:, :, 0:8, 20:28] = 1.0 + torch.rand(4, 1, 8, 8)
    off += 1e-3 * torch.rand(4, 1, 32, 32)  # the rest ranked at random
    good = deletion_auc(RegionModel(), x, [0] * 4, on)
    bad = deletion_auc(RegionModel(), x, [0] * 4, off)
    assert (good < bad - 0.2).all()
    # the block is 1/16 of the pixels: the map on it blackens it whole at the first of 16 steps,
    # after which class 0's logit is 20 * (0 - 0.25) = -5 on every later step
    assert good == pytest.approx(np.full(4, 1 / (1 + np.exp(5))), abs=1e-6)
    # one forward pass per step and image batch, a pixel's channels flipped together
    counting = CountingRegionModel().train()
    deletion_auc(counting, x, [0] * 4, on, steps=16, batch_size=3)
    assert counting.calls == 2 * 16
    assert counting.training  # scored in eval mode, the caller's mode given back
    blank = deletion_auc(RegionModel(), x, [0] * 4, torch.zeros(4, 1, 32, 32))
    assert np.isnan(blank).all()
    with pytest.raises(ValueError, match="steps=0"):
        deletion_auc(RegionModel(), x, [0] * 4, on, steps=0)
    with pytest.raises(ValueError, match="must match"):
        deletion_auc(RegionModel(), x, [0] * 3, on)


def test_deletion_auc_is_quantus_pixel_flipping_on_one_channel():
    """Quantus flips one channel of one pixel per feature; on a one-channel image that is a whole
    pixel, so there the two must be the same computation (a 3-channel grey image too)."""
    import warnings

    import quantus

    from camtrap_ssl.analysis.localisation import deletion_auc

    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 32, 32, generator=g)
    maps = torch.rand(6, 1, 32, 32, generator=g)  # distinct values: one order, no ties
    maps[:, :, 16:24, 8:16] += 0.5 * torch.rand(6, 1, 8, 8, generator=g)
    y = np.array([0, 1, 0, 0, 1, 0])
    metric = quantus.PixelFlipping(features_in_step=32 * 32 // 16, perturb_baseline="black",
                                   disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curves = metric(model=RegionModel().eval(), x_batch=x.numpy(), y_batch=y,
                        a_batch=maps.numpy().astype(np.float64), channel_first=True,
                        softmax=True, device="cpu", batch_size=6)
    expected = np.array([np.mean(c) for c in curves])
    assert len(curves[0]) == 16
    assert deletion_auc(RegionModel(), x, y, maps) == pytest.approx(expected, abs=1e-6)
    grey = deletion_auc(RegionModel(), x.expand(-1, 3, -1, -1), y, maps, batch_size=4)
    assert grey == pytest.approx(expected, abs=1e-6)
