import torch

from camtrap_ssl.pretrain.views import (
    color_jitter,
    random_grayscale,
    random_resized_crop,
    recipe_for,
)


def _img(n=4, s=16):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, s, s, generator=g)


def test_full_crop_without_flip_is_identity():
    x = _img()
    g = torch.Generator().manual_seed(1)
    y = random_resized_crop(x, 16, (1.0, 1.0), g, ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(y, x, atol=1e-5)


def test_full_crop_with_flip_mirrors():
    x = _img()
    g = torch.Generator().manual_seed(1)
    y = random_resized_crop(x, 16, (1.0, 1.0), g, ratio=(1.0, 1.0), flip_p=1.0)
    assert torch.allclose(y, x.flip(3), atol=1e-5)


def test_small_crop_zooms_in():
    # a crop of a quarter of the area, resized to the full side, must differ from the original
    x = _img()
    y = random_resized_crop(x, 16, (0.25, 0.25), torch.Generator().manual_seed(2), flip_p=0.0)
    assert y.shape == x.shape and not torch.allclose(y, x, atol=1e-2)


def test_jitter_off_is_identity_and_on_changes_colour():
    x = _img()
    g = torch.Generator().manual_seed(3)
    assert torch.equal(color_jitter(x, 1.0, 0.0, g), x)
    y = color_jitter(x, 1.0, 1.0, g)
    assert y.min() >= 0 and y.max() <= 1 and (y - x).abs().mean() > 0.01


def test_grayscale_gives_equal_channels():
    y = random_grayscale(_img(), 1.0, torch.Generator())
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])


def test_recipes_are_deterministic_and_multicrop_has_small_views():
    x = _img(s=32)
    a = recipe_for("swav", 32)(x, torch.Generator().manual_seed(5))
    b = recipe_for("swav", 32)(x, torch.Generator().manual_seed(5))
    assert [v.shape[-1] for v in a] == [32, 32, 16, 16, 16, 16]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len(recipe_for("simclr", 32)(x, torch.Generator())) == 2
