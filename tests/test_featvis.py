"""Tests for camtrap_ssl.analysis.featvis: lucent-based feature visualization with a disk cache."""
import numpy as np
import pytest
import torch
from toy_networks import SelfNormalisingNet as Tiny

from camtrap_ssl.analysis import featvis
from camtrap_ssl.analysis.featvis import layer_names, model_fingerprint, visualize


def channel_mean(model, image_hwc, channel):
    acts = {}
    h = model.layer2.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    with torch.no_grad():
        model(torch.from_numpy(image_hwc).permute(2, 0, 1)[None])
    h.remove()
    return float(acts["a"][0, channel].mean())


def test_channel_objective_raises_the_channel_and_caches(tmp_path, monkeypatch):
    model = Tiny().eval()
    start = visualize(model, "channel", "layer2", 5, size=32, steps=0, seed=3)
    done = visualize(model, "channel", "layer2", 5, size=32, steps=15, lr=0.1, seed=3,
                     cache_dir=tmp_path)
    assert done.image.shape == (32, 32, 3) and done.image.dtype == np.float32
    assert 0 <= done.image.min() and done.image.max() <= 1
    before, after = channel_mean(model, start.image, 5), channel_mean(model, done.image, 5)
    assert after > before + 0.1 * abs(before) + 1e-3
    assert done.value_end == pytest.approx(after, rel=1e-4)
    assert done.value_start == pytest.approx(before, rel=1e-4)
    assert not model.layer2._forward_hooks  # our hooks are gone (render_vis would leak them)
    assert all(p.grad is None for p in model.parameters())
    # the cache answers without optimizing again
    monkeypatch.setattr(featvis, "_optimize", lambda *a, **k: pytest.fail("recomputed"))
    again = visualize(model, "channel", "layer2", 5, size=32, steps=15, lr=0.1, seed=3,
                      cache_dir=tmp_path)
    assert again.from_cache and np.array_equal(again.image, done.image)
    assert (tmp_path / f"{done.key}.png").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    # a different unit or different weights is a different entry
    with pytest.raises(pytest.fail.Exception):
        visualize(model, "channel", "layer2", 4, size=32, steps=15, lr=0.1, seed=3,
                  cache_dir=tmp_path)
    changed = Tiny()
    with torch.no_grad():
        changed.fc.bias += 1
    assert model_fingerprint(changed) != model_fingerprint(model)


def test_other_objectives_run_and_improve():
    model = Tiny().eval()
    for objective, layer, unit in (("neuron", "layer1_0", 2), ("layer", "layer2", None),
                                   ("class", None, 1)):
        r = visualize(model, objective, layer, unit, size=16, steps=12, lr=0.1,
                      transforms=False)
        assert r.value_end > r.value_start, objective
    assert r.layer == "fc"


def test_lucent_names_and_errors():
    model = Tiny().eval()
    assert layer_names(model) == ["layer1", "layer1_0", "layer1_1", "layer2", "layer2_0",
                                  "layer2_1", "fc"]
    with pytest.raises(ValueError, match="deepdream.*|allowed: \\['neuron'"):
        visualize(model, "deepdream", "layer2", 0)
    with pytest.raises(ValueError, match="layer2_0"):
        visualize(model, "channel", "layer9", 0)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        visualize(model, "channel", "layer2", 8)
    with pytest.raises(ValueError, match="convolutional"):
        visualize(model, "neuron", "fc", 0)
    with pytest.raises(ValueError, match="steps"):
        visualize(model, "channel", "layer2", 0, steps=-1)
