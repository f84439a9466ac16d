"""Tests for camtrap_ssl.analysis.attribution: captum methods and the batched Score-CAM."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from toy_networks import residual_tiny as tiny

from camtrap_ssl.analysis.attribution import (
    METHODS,
    attribute,
    normalize_map,
    scorecam,
    scorecam_reference,
    to_2d,
)


def images(n=2, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


# ------------------------------------------------------------------ Score-CAM
@pytest.mark.parametrize("variant,batch_size", [("authors", 5), ("paper", 64),
                                                ("pytorch_grad_cam", 3)])
def test_scorecam_batched_equals_reference(variant, batch_size):
    m, x = tiny(), images(4)
    t = torch.tensor([0, 1, 2, 3])  # every class once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper variant may blank some maps
        fast = scorecam(m, x, t, layer="layer3", batch_size=batch_size, variant=variant)
        slow = scorecam_reference(m, x, t, layer="layer3", variant=variant)
    assert fast.shape == (4, 1, 32, 32)
    assert torch.allclose(fast, slow, atol=1e-5)
    peaks = fast.amax((1, 2, 3))
    assert int((peaks > 0.99).sum()) >= 2 and torch.all((peaks == 0) | (peaks > 0.99))


def test_scorecam_variants_differ_and_the_default_cannot_blank():
    m, x = tiny(), images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {v: scorecam(m, x, 1, layer="layer3", variant=v) for v in ("authors", "paper")}
    assert (out["authors"] - out["paper"]).abs().max() > 1e-4
    # a model whose black image is more confident than any masked copy: the paper variant
    # blanks every map (and says so), the default does not
    torch.manual_seed(0)
    dark = tiny(seed=3)
    with torch.no_grad():
        dark.fc.bias.zero_()
    xb = images(6, seed=2)
    t = dark(torch.zeros(1, 3, 32, 32)).argmax(1).repeat(6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paper = scorecam(dark, xb, t, layer="layer3", variant="paper")
    blank = int((paper.flatten(1).amax(1) == 0).sum())
    if blank:
        assert any(f"{blank} of 6 maps are blank" in str(w.message) for w in caught)
    default = scorecam(dark, xb, t, layer="layer3")
    assert (default.flatten(1).amax(1) > 0.99).all()


def test_scorecam_matches_pytorch_grad_cam_with_its_variant():
    gc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m, x = tiny(), images(3, seed=4)
    targets = [0, 2, 3]
    ours = scorecam(m, x, torch.tensor(targets), layer="layer3", variant="pytorch_grad_cam")
    with gc.ScoreCAM(model=m, target_layers=[m.layer3]) as cam:
        cam.batch_size = 16
        theirs = torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(t)
                                                              for t in targets]))
    for i in range(3):
        r = torch.corrcoef(torch.stack([ours[i, 0].flatten(), theirs[i].flatten()]))[0, 1]
        assert r > 0.99, (i, float(r))


class GridCells(nn.Module):
    """A 4x4 grid of one-hot channels: channel k is non-zero only on cell k (its mean)."""

    def forward(self, x):
        cells = F.avg_pool2d(x.mean(1, keepdim=True), x.shape[-1] // 4)
        return cells * torch.eye(16).view(1, 16, 4, 4)


class RegionModel(nn.Module):
    """Class 0's logit depends only on the pixels of grid cell (row 2, col 1)."""

    def __init__(self):
        super().__init__()
        self.layer4 = GridCells()

    def forward(self, x):
        a = self.layer4(x)
        region = x[:, :, 16:24, 8:16].mean((1, 2, 3))
        logits = torch.stack([10 * region, torch.zeros_like(region)], 1)
        return logits + 0 * a.sum((1, 2, 3))[:, None]  # layer4 runs but does not matter


def test_scorecam_finds_the_region_the_logit_depends_on():
    x = images(3, 32, seed=5)
    cam = scorecam(RegionModel(), x, 0, layer="layer4")
    for i in range(3):
        r, c = divmod(int(cam[i, 0].argmax()), 32)
        assert 16 <= r < 24 and 8 <= c < 16


def test_scorecam_skips_constant_channels_and_zero_cam():
    # layer4 of a 32 px input in a net that pools to 1x1 has no spatial information
    m = tiny()
    m.layer4 = nn.Sequential(nn.AdaptiveAvgPool2d(1), m.layer4)
    out = scorecam(m, images(1), 0, layer="layer4")
    assert torch.count_nonzero(out) == 0


# ------------------------------------------------------------------ captum methods
def test_shapes_and_ranges_per_method():
    m, x = tiny(), images(2)
    out = {meth: attribute(m, x, 1, meth) for meth in METHODS}
    for meth in ("saliency", "deconvnet", "guided_backprop", "guided_gradcam"):
        assert out[meth].shape == (2, 3, 32, 32), meth
    for meth in ("gradcam", "scorecam"):
        assert out[meth].shape == (2, 1, 32, 32), meth
        assert out[meth].min() >= 0, meth
    assert out["saliency"].min() >= 0  # abs=True by default (Simonyan et al.)
    for a in METHODS:  # every method gives its own answer
        for b in METHODS:
            if a < b and out[a].shape == out[b].shape:
                assert not torch.allclose(out[a], out[b]), (a, b)


def test_guided_gradcam_is_guided_backprop_times_gradcam():
    m, x = tiny(), images(2)
    gb = attribute(m, x, 2, "guided_backprop")
    gc = attribute(m, x, 2, "gradcam", layer="layer3")
    ggc = attribute(m, x, 2, "guided_gradcam", layer="layer3")
    assert torch.allclose(ggc, gb * gc, atol=1e-6)


class _Guided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


class _Deconv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


class _FnReLU(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


def _manual(model, fn, x, t):
    """Independent guided backprop / deconvnet: every ReLU module swapped for an autograd
    function with the modified backward pass."""
    m = copy.deepcopy(model)
    for mod in list(m.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(mod, name, _FnReLU(fn))
    x = x.clone().requires_grad_(True)
    m(x)[torch.arange(len(x)), t].sum().backward()
    return x.grad


@pytest.mark.parametrize("method,fn", [("guided_backprop", _Guided), ("deconvnet", _Deconv)])
def test_captum_handles_reused_inplace_relus(method, fn):
    m, x, t = tiny(), images(2), torch.tensor([1, 3])
    ours = attribute(m, x, t, method)
    assert torch.allclose(ours, _manual(m, fn, x, t), atol=1e-6)
    plain = attribute(m, x, t, "saliency", abs=False)
    assert (ours - plain).abs().max() > 0.1 * plain.abs().max()


def test_guided_backprop_and_deconvnet_pass_only_positive_gradients():
    torch.manual_seed(0)
    # the input enters a ReLU first, so the modified backward pass reaches the pixels directly
    m = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(6, 3)).eval()
    x = images(2, 16)
    plain = attribute(m, x, 0, "saliency", abs=False)
    assert plain.min() < 0
    for meth in ("guided_backprop", "deconvnet"):
        assert attribute(m, x, 0, meth).min() >= 0, meth


def test_attribute_restores_training_mode_and_predicted_target():
    m, x = tiny(), images(2)
    m.train()
    a = attribute(m, x, None, "gradcam")
    assert m.training
    m.eval()
    pred = m(x).argmax(1)
    assert torch.allclose(a, attribute(m, x, pred, "gradcam"))


def test_errors_name_allowed_values():
    m, x = tiny(), images(1)
    with pytest.raises(ValueError, match="scorecam"):
        attribute(m, x, 0, "lime")
    with pytest.raises(ValueError, match="layer4"):
        attribute(m, x, 0, "gradcam", layer="layer9")
    with pytest.raises(ValueError, match="baseline"):
        attribute(m, x, 0, "scorecam", baseline="mean")
    with pytest.raises(ValueError, match="batch_size"):
        scorecam(m, x, 0, batch_size=0)
    with pytest.raises(ValueError, match="allowed"):
        attribute(m, x, 0, "gradcam", abs=False)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        attribute(m, x[0], 0, "saliency")
    with pytest.raises(ValueError, match="out of range"):
        scorecam(m, x, 7)


def test_to_2d_and_normalize_map():
    maps = torch.tensor([[[[1.0, -3.0]], [[2.0, 1.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    assert to_2d(maps, "abs_max").flatten().tolist() == [2.0, 3.0]
    assert to_2d(maps, "sum").flatten().tolist() == [3.0, -2.0]
    assert to_2d(maps, "positive_sum").flatten().tolist() == [3.0, 1.0]
    n = normalize_map(maps, "sum")
    assert n.flatten().tolist() == [1.0, 0.0]
    assert torch.count_nonzero(normalize_map(torch.ones(2, 1, 3, 3))) == 0
    with pytest.raises(ValueError, match="abs_max"):
        to_2d(maps, "max")


def test_blank_maps_are_warned_about_with_their_count():
    m = tiny()
    with torch.no_grad():
        m.fc.weight.zero_()  # logits no longer depend on the image: every gradient is zero
    with pytest.warns(UserWarning, match="saliency: 2 of 2 maps are blank"):
        out = attribute(m, images(2), 1, "saliency")
    assert torch.count_nonzero(out) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribute(tiny(), images(2), 1, "saliency")  # a working map says nothing


# ------------------------------------------------------------------ the method classes
def test_methods_map_each_name_to_its_class_in_the_studys_order():
    from camtrap_ssl.analysis import attribution as A

    assert list(METHODS) == ["saliency", "deconvnet", "guided_backprop", "gradcam",
                             "guided_gradcam", "scorecam"]
    assert [METHODS[n] for n in ("saliency", "gradcam", "scorecam")] == [A.Saliency, A.GradCAM,
                                                                        A.ScoreCAM]
    assert all(cls.name == name for name, cls in METHODS.items())
    assert A.LAYER_METHODS == ("gradcam", "guided_gradcam", "scorecam")
    with pytest.raises(TypeError):
        METHODS["lime"] = A.Saliency  # read-only: one table for every caller


def test_a_class_gives_what_attribute_gives_by_name():
    from camtrap_ssl.analysis import attribution as A

    m, x, t = tiny(), images(2), torch.tensor([1, 3])
    assert torch.equal(A.Saliency(m, abs=False).attribute(x, t),
                       attribute(m, x, t, "saliency", abs=False))
    assert torch.equal(A.GuidedGradCAM(m, layer="layer3").attribute(x, t),
                       attribute(m, x, t, "guided_gradcam", layer="layer3"))
    sc = A.ScoreCAM(m, layer="layer3", batch_size=4, variant="pytorch_grad_cam")
    assert torch.equal(sc.attribute(x, t), scorecam(m, x, t, layer="layer3", batch_size=4,
                                                    variant="pytorch_grad_cam"))
    # the layer reaches the CAM methods: layer3 and layer4 give different maps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model's layer4 Grad-CAM blanks one map
        assert not torch.equal(A.GradCAM(m, "layer3").attribute(x, t),
                               A.GradCAM(m).attribute(x, t))


@pytest.mark.parametrize("build, word", [
    (lambda A, m: A.Saliency(m, abs="yes"), "abs='yes'; allowed: True or False"),
    (lambda A, m: A.GradCAM(m, layer="layer9"), "layer='layer9'"),
    (lambda A, m: A.GuidedGradCAM(m, layer="conv9"), "top-level modules"),
    (lambda A, m: A.ScoreCAM(m, variant="fast"), "variant='fast'; allowed: ['authors'"),
    (lambda A, m: A.ScoreCAM(m, batch_size=0), "batch_size must be a positive int"),
    (lambda A, m: A.ScoreCAM(m, batch_size=True), "batch_size must be a positive int"),
    (lambda A, m: A.ScoreCAM(m, progress=1), "progress=1; allowed: True or False"),
])
def test_each_class_checks_its_own_arguments(build, word):
    from camtrap_ssl.analysis import attribution as A

    with pytest.raises(ValueError) as err:
        build(A, tiny())
    assert word in str(err.value)


def test_attribute_names_the_keywords_a_method_takes():
    m, x = tiny(), images(1)
    with pytest.raises(ValueError, match=r"\['batch_size'\] for method='saliency' \(Saliency\); "
                                         r"allowed: \['abs'\]"):
        attribute(m, x, 0, "saliency", batch_size=3)
    with pytest.raises(ValueError, match=r"allowed: \['batch_size', 'variant', 'progress'\]"):
        attribute(m, x, 0, "scorecam", abs=True)
    # the layer is for the CAM methods; the gradient methods ignore it, so one call serves all
    assert torch.equal(attribute(m, x, 0, "saliency", layer="layer3"),
                       attribute(m, x, 0, "saliency"))
