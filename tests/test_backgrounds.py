"""Tests for camtrap_ssl.analysis.backgrounds: composites and the mask-based saliency metrics."""
import numpy as np
import pytest
import torch

from camtrap_ssl.analysis.backgrounds import (
    bbox_to_mask,
    bootstrap_ci,
    gaussian_blur,
    mask_energy_share,
    paired_difference,
    pointing_game,
    replace_background,
)


def scene(seed=0, n=2, size=24):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    m = torch.zeros(n, 1, size, size, dtype=torch.bool)
    m[:, :, 8:16, 6:14] = True
    return x, m


def test_white_background():
    x, m = scene()
    out = replace_background(x, m, "white")
    assert torch.equal(out[m.expand_as(x)], x[m.expand_as(x)])
    assert torch.all(out[~m.expand_as(x)] == 1.0)
    assert torch.equal(replace_background(x, m, "original"), x)


def test_blur_changes_background_only_and_does_not_leak_the_animal():
    x, m = scene()
    out = replace_background(x, m, "blur", sigma=1.5)
    inside, outside = m.expand_as(x), ~m.expand_as(x)
    assert torch.equal(out[inside], x[inside])
    assert (out[outside] - x[outside]).abs().mean() > 0.05
    # far (> 3 sigma + 1 px) from the animal, the blur is the plain Gaussian blur
    plain = gaussian_blur(x, 1.5)
    assert torch.allclose(out[..., :2, :], plain[..., :2, :], atol=1e-5)
    # a red animal on black: a blurred background must stay black (no red halo)
    red = torch.zeros(1, 3, 24, 24)
    red[0, 0, 8:16, 6:14] = 1.0
    out = replace_background(red, m[:1], "blur", sigma=2.0)
    assert out[~m[:1].expand_as(red)].abs().max() < 1e-6
    assert gaussian_blur(red, 2.0)[0, 0, 7, 10] > 0.1  # the naive blur would have leaked


def test_bbox_masks():
    mk = bbox_to_mask([1, 2, 3, 4], (10, 10))
    expected = torch.zeros(1, 10, 10, dtype=torch.bool)
    expected[0, 2:6, 1:4] = True
    assert torch.equal(mk, expected)
    # a box in original pixels (200 x 100 image) scaled to a 10 x 20 output (H, W)
    scaled = bbox_to_mask([[20, 10, 40, 30]], (10, 20), original_size=(200, 100))
    assert scaled[0].nonzero().min(0).values.tolist() == [1, 2]
    assert scaled[0].nonzero().max(0).values.tolist() == [3, 5]
    two = bbox_to_mask([[0, 0, 2, 2], [8, 8, 2, 2]], 10)
    assert int(two.sum()) == 8
    x, m = scene()
    via_box = replace_background(x, bboxes=[[6, 8, 8, 8]] * 2, mode="white")
    assert torch.equal(via_box, replace_background(x, m, "white"))


def test_mask_energy_share():
    _, m = scene(n=1)
    inside = torch.zeros(1, 1, 24, 24)
    inside[0, 0, 9:12, 7:10] = 1.0
    assert mask_energy_share(inside, m)[0] == pytest.approx(1.0)
    assert mask_energy_share(1.0 - m.float(), m)[0] == pytest.approx(0.0)
    # hand computation: positive energy 1 + 2 + 3 = 6, of which 1 inside (the -4 does not count)
    maps = torch.tensor([[[1.0, 2.0], [3.0, -4.0]]])
    mask = torch.tensor([[[True, False], [False, True]]])
    assert mask_energy_share(maps, mask)[0] == pytest.approx(1 / 6)
    # a uniform map scores the mask's area share (the chance level)
    assert mask_energy_share(torch.ones(1, 24, 24), m)[0] == pytest.approx(64 / 576)
    assert np.isnan(mask_energy_share(-torch.ones(1, 24, 24), m)[0])


def test_pointing_game():
    maps = torch.zeros(3, 1, 10, 10)
    maps[0, 0, 5, 5] = 1.0  # inside
    maps[1, 0, 2, 5] = 1.0  # two pixels above the mask
    mask = torch.zeros(3, 1, 10, 10, dtype=torch.bool)
    mask[:, :, 4:7, 4:7] = True
    hits = pointing_game(maps, mask)
    assert hits[0] == 1.0 and hits[1] == 0.0 and np.isnan(hits[2])  # constant map: no point
    assert pointing_game(maps, mask, tolerance_px=1)[1] == 0.0
    assert pointing_game(maps, mask, tolerance_px=2)[1] == 1.0
    with pytest.raises(ValueError, match="tolerance_px"):
        pointing_game(maps, mask, tolerance_px=-1)


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    v = rng.normal(0.3, 0.1, size=200)
    mean, lo, hi = bootstrap_ci(v, n_boot=500, seed=1)
    assert mean == pytest.approx(v.mean())
    assert lo < mean < hi
    assert hi - lo == pytest.approx(2 * 1.96 * v.std() / np.sqrt(200), rel=0.25)
    assert bootstrap_ci(v, n_boot=500, seed=1) == (mean, lo, hi)
    assert bootstrap_ci([0.5, 0.5, np.nan], seed=0) == (0.5, 0.5, 0.5)
    assert all(np.isnan(bootstrap_ci([np.nan])))
    with pytest.raises(ValueError, match="ci"):
        bootstrap_ci(v, ci=95)
    d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], n_boot=100)
    assert d == pytest.approx((0.5, 0.5, 0.5))


def test_errors_name_allowed_values():
    x, m = scene()
    with pytest.raises(ValueError, match="white"):
        replace_background(x, m, "grey")
    with pytest.raises(ValueError, match="exactly one"):
        replace_background(x, mode="white")
    with pytest.raises(ValueError, match="masks must be"):
        replace_background(x, m[:1], "white")
    with pytest.raises(ValueError, match="to_2d"):
        mask_energy_share(torch.rand(2, 3, 24, 24), m)
