"""The ResNet family, the registry and the paper-scale zoo (no downloads; big models on meta)."""
import pytest
import torch
import torchvision
from torch import nn

from camtrap_ssl.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_MODELS,
    blocks,
    count_params,
    create_model,
    get_entry,
    list_models,
    resnet,
    simclrv2_resnet,
)
from camtrap_ssl.models.simclrv2 import (
    SelectiveKernelConv,
    TFSameMaxPool2d,
    TFShortcutPool,
)


def _convs_and_bns(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]


def _channels(m):
    return (m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.num_features,)


@pytest.mark.parametrize("depth", [18, 50])
def test_width_two_doubles_every_channel_count(depth):
    with torch.device("meta"):
        base, wide = resnet(depth), resnet(depth, width=2)
    pairs = list(zip(_convs_and_bns(base), _convs_and_bns(wide)))
    assert len(pairs) == len(_convs_and_bns(wide)) > 0
    for (name, _), (b, w) in zip([(n, m) for n, m in base.named_modules()
                                  if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))], pairs):
        expect = tuple(3 if c == 3 and name == "conv1" else 2 * c for c in _channels(b))
        assert _channels(w) == expect, name
    assert wide.num_features == 2 * base.num_features


def test_fractional_width_demo_architectures():
    m = create_model("resnet18_w025")
    assert m.conv1.out_channels == 16
    assert [m.layer1[0].conv1.out_channels, m.layer2[0].conv1.out_channels,
            m.layer3[0].conv1.out_channels, m.layer4[0].conv1.out_channels] == [16, 32, 64, 128]
    assert m.num_features == 128 and get_entry("resnet18_w025").num_features == 128
    t = create_model("resnet10_w0125")
    assert [len(b) for b in blocks(t).values()] == [1, 1, 1, 1]
    assert t.layer4[0].conv2.out_channels == 64 and t.conv1.out_channels == 8


def test_small_stem_gives_4x4_layer4_maps_at_64px():
    x = torch.rand(2, 3, 64, 64)
    small = resnet(18, width=0.25, small_stem=True)
    assert isinstance(small.maxpool, nn.Identity) and small.conv1.kernel_size == (3, 3)
    assert small.forward_maps(x).shape == (2, 128, 4, 4)
    assert resnet(18, width=0.25).forward_maps(x).shape == (2, 128, 2, 2)


def test_torchvision_state_dict_loads_by_name_and_matches_output():
    torch.manual_seed(0)
    tv = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1],
                                          num_classes=7).eval()
    ours = resnet(10, num_classes=7).eval()
    ours.load_state_dict(tv.state_dict())  # strict: identical names and shapes
    x = torch.rand(2, 3, 48, 48)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(ours(x), tv((x - mean) / std))
    with torch.device("meta"):
        a, b = resnet(50, num_classes=1000).state_dict(), torchvision.models.resnet50().state_dict()
    assert {k: tuple(v.shape) for k, v in a.items()} == {k: tuple(v.shape) for k, v in b.items()}


def test_preprocessing_buffers_are_non_persistent_and_applied_first():
    m = resnet(10, width=0.125, small_stem=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5)).eval()
    assert "mean" not in m.state_dict() and "std" not in m.state_dict()
    assert m.mean.shape == (1, 3, 1, 1)
    ref = resnet(10, width=0.125, small_stem=True, mean=0.0, std=1.0).eval()
    ref.load_state_dict(m.state_dict())
    x = torch.rand(2, 3, 32, 32)
    manual = (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(m(x), ref(manual))
    with pytest.raises(ValueError, match="std"):
        resnet(10, std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        m(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_zoo_preprocessing_simclr_unnormalized_others_imagenet(name):
    entry = get_entry(name)
    m = create_model(name, width=0.0625)  # entry's preprocessing, tiny body
    simclr = entry.method == "simclrv2"
    exp_mean, exp_std = ((0.0,) * 3, (1.0,) * 3) if simclr else (IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(m.mean.flatten(), torch.tensor(exp_mean))
    torch.testing.assert_close(m.std.flatten(), torch.tensor(exp_std))
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(m.normalize(x), x) == simclr


def test_mean_std_override():
    m = create_model("resnet10_w0125", mean=0.0, std=1.0)
    assert torch.equal(m.mean, torch.zeros(1, 3, 1, 1)) and torch.equal(m.std, torch.ones(1, 3, 1, 1))


PAPER_PARAMS = {"supervised_r50": 24, "supervised_r152": 58, "simclrv2_r50_1x_sk0": 24,
                "simclrv2_r50_1x_sk1": 34, "simclrv2_r50_2x_sk0": 94, "simclrv2_r50_2x_sk1": 140,
                "simclrv2_r152_1x_sk0": 58, "simclrv2_r152_1x_sk1": 89, "swav_r50": 24,
                "swav_r50w2": 94, "deepclusterv2_r50": 24, "barlowtwins_r50": 24}


def test_zoo_is_complete_and_matches_the_study_table():
    assert set(PAPER_MODELS) == set(PAPER_PARAMS) and set(PAPER_MODELS) <= set(list_models())
    for name, params in PAPER_PARAMS.items():
        entry = get_entry(name)
        assert entry.params_m == params
        with torch.device("meta"):
            m = create_model(name, num_classes=10)
        n = count_params(m) / 1e6  # backbone only
        assert abs(n / params - 1) < 0.04, (name, n)
        assert m.num_features == entry.num_features
        assert entry.paradigm == ("SL" if entry.method == "supervised" else "SSL")
        fam = {"supervised": None, "simclrv2": "instance", "barlowtwins": "instance",
               "swav": "cluster", "deepclusterv2": "cluster"}[entry.method]
        assert entry.family == fam
    assert get_entry("supervised_r50").weights.sha256 == "0676ba61"
    assert get_entry("supervised_r152").weights.sha256 == "394f9c45"
    assert get_entry("swav_r50").weights.sha256 is None


def test_simclrv2_sk_changes_stem_shortcut_and_mid_conv():
    with torch.device("meta"):
        sk0, sk1 = simclrv2_resnet(50, 1, sk=False), simclrv2_resnet(50, 1, sk=True)
    assert isinstance(sk0.conv1, nn.Conv2d) and sk0.conv1.kernel_size == (7, 7)
    convs = [m for m in sk1.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.out_channels) for c in convs] == [((3, 3), 32), ((3, 3), 32), ((3, 3), 64)]
    assert isinstance(sk1.layer2[0].downsample[0], TFShortcutPool)
    assert sk1.layer2[0].downsample[1].stride == (1, 1)  # the pool, not the conv, strides
    assert sk0.layer2[0].downsample[0].stride == (2, 2)
    sk = sk1.layer3[0].conv2
    assert isinstance(sk, SelectiveKernelConv)
    assert sk.conv.out_channels == 2 * 256 and sk.fc1.out_channels == 32  # max(256*0.0625, 32)
    assert sk1.layer4[0].conv2.fc1.out_channels == 32  # 512 * 0.0625
    with torch.device("meta"):
        assert simclrv2_resnet(50, 2, sk=True).layer4[0].conv2.fc1.out_channels == 64


def test_selective_kernel_output_is_a_per_channel_convex_mix_of_branches():
    torch.manual_seed(0)
    sk = SelectiveKernelConv(4, 6, stride=1, sk_ratio=0.5, min_dim=2).eval()
    x = torch.randn(2, 4, 5, 5)
    out = sk(x)
    a, b = torch.relu(sk.bn(sk.conv(x))).chunk(2, dim=1)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    assert out.shape == (2, 6, 5, 5)
    assert bool((out >= lo - 1e-6).all() and (out <= hi + 1e-6).all())
    assert not torch.allclose(out, a) and not torch.allclose(out, b)


def test_tf_same_pools():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    p1 = TFShortcutPool(1)(x)  # 2x2/1, SAME: the last row/column average real pixels only
    assert p1.shape == (1, 1, 4, 4)
    assert p1[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4 and p1[0, 0, 3, 3] == 15 and p1[0, 0, 0, 3] == (3 + 7) / 2
    p2 = TFShortcutPool(2)(x)
    assert torch.equal(p2, nn.functional.avg_pool2d(x, 2, 2))
    y = torch.arange(36.0).view(1, 1, 6, 6)
    m = TFSameMaxPool2d()(y)  # windows start at 0, 2, 4 (TF); torch's padding=1 starts at -1
    assert m.shape == (1, 1, 3, 3) and m[0, 0, 0, 0] == 14 and m[0, 0, 2, 2] == 35


def test_heads_features_and_blocks():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    m = create_model("resnet10_w0125")
    assert isinstance(m.fc, nn.Identity) and m.num_classes is None
    assert m(x).shape == (3, 64)
    torch.testing.assert_close(m(x), m.forward_features(x))
    h = create_model("resnet10_w0125", num_classes=5).eval()
    assert isinstance(h.fc, nn.Linear) and h.fc.in_features == 64 and h(x).shape == (3, 5)
    torch.testing.assert_close(h(x), h.fc(h.forward_features(x)))
    b = blocks(h)
    assert list(b) == ["layer1", "layer2", "layer3", "layer4"] and b["layer3"] is h.layer3
    with pytest.raises(ValueError, match="layer1"):
        blocks(nn.Linear(2, 2))


def test_bad_arguments_fail_early_with_allowed_values():
    with pytest.raises(ValueError, match=r"depth must be one of \[10, 18, 34, 50, 101, 152\]"):
        resnet(11)
    with pytest.raises(ValueError, match="width"):
        resnet(18, width=0)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet10_w0125", num_classes=0)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['widht'\].*'width'"):
        create_model("resnet10_w0125", widht=2)
    with pytest.raises(ValueError, match="has no registered weights"):
        create_model("resnet10_w0125", pretrained=True)


def test_unknown_name_lists_registered_names_and_close_matches():
    with pytest.raises(ValueError) as err:
        create_model("swav_r5O")
    msg = str(err.value)
    assert "swav_r5O" in msg and "Did you mean" in msg and "'swav_r50'" in msg
    assert all(n in msg for n in list_models())
