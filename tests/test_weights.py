"""Checkpoint fetching, verification, safe loading and the key maps of every published layout.

Checkpoints are fabricated in each publisher's layout and served through the real download path
(``file://`` and a loopback HTTP server); nothing leaves the machine.
"""
import hashlib
import http.server
import threading

import pytest
import torch
from range_http import send_headers_for_range, unserved_url
from torch import nn

from camtrap_ssl.models import (
    ChecksumError,
    ModelEntry,
    UnsafeCheckpointError,
    WeightSource,
    WeightsUnavailableError,
    create_model,
    get_entry,
    load_backbone_state,
    register_model,
    resnet,
    simclrv2_resnet,
    unregister_model,
)
from camtrap_ssl.models.fabricate import ConverterResNet, random_state
from camtrap_ssl.models.registry import load_entry_weights
from camtrap_ssl.models.simclrv2 import simclrv2_keys
from camtrap_ssl.models.weights import (
    download,
    fetch_weights,
    load_checkpoint,
    weights_dir,
)
from camtrap_ssl.models.zoo import barlowtwins_keys, swav_keys

TINY = {"depth": 10, "width": 0.125, "small_stem": True}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("CAMTRAP_SSL_WEIGHTS", str(d))
    return d


@pytest.fixture
def entry():
    """Register temporary registry entries (tiny architectures, real key maps)."""
    names = []

    def make(name, url, key_map, builder=resnet, arch=TINY, sha256=None, filename=None, **kw):
        register_model(ModelEntry(
            name=name, builder=builder, arch=arch, method=kw.pop("method", "swav"),
            num_features=kw.pop("num_features", 64),
            weights=WeightSource(url, filename or url.rsplit("/", 1)[-1], sha256, key_map), **kw),
            overwrite=True)
        names.append(name)
        return name

    yield make
    for n in names:
        unregister_model(n)


class _Server:
    """Loopback HTTP server with Range support; can cut a response short or ignore Range."""

    def __init__(self):
        self.files, self.requests = {}, []
        self.cut_after = None  # bytes to send before dropping the connection (once)
        self.ignore_range = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                body = send_headers_for_range(self, data, outer.ignore_range)
                if outer.cut_after is not None:
                    body, outer.cut_after = body[:outer.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _assert_backbone_equal(model, expected):
    got = model.state_dict()
    keys = [k for k in got if not k.startswith("fc.")]
    assert keys and set(keys) <= set(expected)
    for k in keys:
        assert torch.equal(got[k], expected[k]), k


# --- SwAV / DeepCluster-v2 ---------------------------------------------------------------------

def test_swav_r50_checkpoint_via_file_url_drops_exactly_the_heads(tmp_path):
    model = create_model("swav_r50")  # the one real R50 of this file
    src = random_state(model)
    ckpt = {f"module.{k}": v for k, v in src.items()}
    heads = {"module.projection_head.0.weight": torch.rand(8, 2048),
             "module.projection_head.0.bias": torch.rand(8),
             "module.projection_head.1.running_mean": torch.rand(8),
             "module.prototypes.weight": torch.rand(30, 8)}
    ckpt.update(heads)
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save(ckpt, path)
    mapped = swav_keys(ckpt)
    assert set(ckpt) - {f"module.{k}" for k in mapped} == set(heads)
    assert all(not k.startswith("module.") for k in mapped)
    entry = get_entry("swav_r50")  # create_model(pretrained=True) = fetch_weights + load_entry_weights
    local = fetch_weights(entry, weights_url=path.as_uri(), progress=False)
    report = load_entry_weights(model, entry, local, weights_url=path.as_uri())
    _assert_backbone_equal(model, src)
    assert report["unexpected"] == [] and report["ignored"] == []
    assert isinstance(model.fc, nn.Identity)
    assert model.weights_info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.weights_info["path"].startswith(str(weights_dir()))


def test_deepclusterv2_layout_with_fresh_head_and_env_override(tmp_path, entry, monkeypatch):
    src = random_state(resnet(**TINY))
    ckpt = {f"module.{k}": v for k, v in src.items()}
    ckpt["module.prototypes.weight"] = torch.rand(5, 64)
    path = tmp_path / "dc.pth"
    torch.save(ckpt, path)
    name = entry("tmp_dcv2", "https://unreachable.invalid/dc.pth", swav_keys)
    monkeypatch.setenv("CAMTRAP_SSL_WEIGHTS_URL_TMP_DCV2", path.as_uri())
    model = create_model(name, pretrained=True, num_classes=3, progress=False)
    _assert_backbone_equal(model, src)
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 3


# --- Barlow Twins over HTTP, with an interrupted download resumed ------------------------------

def test_barlowtwins_http_download_resumes_after_interruption(tmp_path, entry, server, cache):
    src = random_state(resnet(**TINY), seed=1)  # no fc: headless backbone
    src = {k: v for k, v in src.items() if not k.startswith("fc.")}
    path = tmp_path / "resnet50.pth"
    torch.save(src, path)
    data = path.read_bytes()
    server.files["/bt/resnet50.pth"] = data
    name = entry("tmp_bt", f"{server.url}/bt/resnet50.pth", barlowtwins_keys,
                 filename="bt_resnet50.pth", sha256=hashlib.sha256(data).hexdigest())
    server.cut_after = len(data) // 3
    with pytest.raises(WeightsUnavailableError) as err:
        create_model(name, pretrained=True, progress=False)
    assert str(cache / "bt_resnet50.pth") in str(err.value)
    part = cache / "bt_resnet50.pth.part"
    assert part.stat().st_size == len(data) // 3
    model = create_model(name, pretrained=True, progress=False)
    assert server.requests[-1] == ("/bt/resnet50.pth", f"bytes={len(data) // 3}-")
    assert not part.exists() and (cache / "bt_resnet50.pth").read_bytes() == data
    _assert_backbone_equal(model, src)
    n = len(server.requests)
    create_model(name, pretrained=True, progress=False)  # cached: no new request
    assert len(server.requests) == n


def test_http_server_ignoring_range_restarts_cleanly(tmp_path, server, cache):
    data = bytes(range(256)) * 50
    server.files["/f.bin"] = data
    server.ignore_range = True
    cache.mkdir(parents=True)
    (cache / "f.bin.part").write_bytes(b"garbage-prefix")
    out = download(f"{server.url}/f.bin", progress=False)
    assert out.read_bytes() == data
    with pytest.raises(WeightsUnavailableError, match=r"HTTP 404.*missing\.pth"):
        download(f"{server.url}/missing.pth", progress=False)


def test_file_url_resume_of_a_partial_copy(tmp_path, cache):
    data = bytes(range(256)) * 40
    (tmp_path / "w.bin").write_bytes(data)
    cache.mkdir(parents=True)
    (cache / "w.bin.part").write_bytes(data[:1000])
    out = download((tmp_path / "w.bin").as_uri(), progress=False,
                   sha256=hashlib.sha256(data).hexdigest()[:8])
    assert out == cache / "w.bin" and out.read_bytes() == data


# --- SimCLRv2 converter layout (ConverterResNet: the converter's module structure) -------------
@pytest.mark.parametrize("sk", [False, True])
def test_simclrv2_converter_checkpoint_loads_every_tensor_and_computes_the_same(tmp_path, entry, sk):
    torch.manual_seed(0)
    conv = ConverterResNet(8, sk).eval()
    conv.load_state_dict(random_state(conv, seed=2))
    head = {"layers.0.weight": torch.rand(4, 256), "layers.1.running_mean": torch.rand(4)}
    path = tmp_path / "r50_1x_sk.pth"
    torch.save({"resnet": conv.state_dict(), "head": head}, path)
    arch = {"depth": 50, "width": 0.125, "sk": sk}
    name = entry("tmp_simclrv2", "gs://bucket/r50", simclrv2_keys, builder=simclrv2_resnet,
                 arch=arch, filename="tmp.pth", method="simclrv2", num_features=256,
                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    model = create_model(name, pretrained=True, num_classes=10, load_head=True,
                         weights_url=path.as_uri(), progress=False).eval()
    mapped = simclrv2_keys({"resnet": conv.state_dict(), "head": head})
    assert len(mapped) == len(conv.state_dict()) and not any(k.startswith("layers.") for k in mapped)
    own = model.state_dict()
    assert set(mapped) == set(own)  # every tensor has a home, none is left out
    for k, v in mapped.items():
        assert torch.equal(own[k], v), k
    # Same function: swap in the converter's border handling (torch max-pool padding, zero-padded
    # stride-1 shortcut pool), which differs from TF only at image borders.
    model.maxpool = nn.MaxPool2d(3, 2, 1)
    if sk:
        model.layer1[0].downsample[0] = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, 1))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model(x), conv.fc(conv(x))
    assert ours.abs().max() > 1e-3 and (ours[0] - ours[1]).abs().max() > 1e-6  # not degenerate
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_simclrv2_unknown_key_is_named():
    with pytest.raises(ValueError, match="net.1.blocks.0.weird.weight"):
        simclrv2_keys({"resnet": {"net.0.0.weight": torch.zeros(1),
                                  "net.1.blocks.0.weird.weight": torch.zeros(1)}})


def test_gs_source_error_explains_conversion_and_cache_path(cache):
    with pytest.raises(WeightsUnavailableError) as err:
        create_model("simclrv2_r50_1x_sk1", pretrained=True, progress=False)
    msg = str(err.value)
    assert "r50_1x_sk1.pth" in msg and "gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk1" in msg
    assert str(cache / "r50_1x_sk1.pth") in msg and "convert.py" in msg and "SimCLRv2-Pytorch" in msg


# --- verification, safety, errors ------------------------------------------------------------

def test_corrupted_file_fails_its_checksum_and_leaves_nothing(tmp_path, cache):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(100.0)}, good)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    bad_bytes = bytearray(good.read_bytes())
    bad_bytes[len(bad_bytes) // 2] ^= 0xFF
    bad = tmp_path / "bad" / "good.pth"
    bad.parent.mkdir()
    bad.write_bytes(bytes(bad_bytes))
    with pytest.raises(ChecksumError) as err:
        download(bad.as_uri(), sha256=digest, progress=False)
    msg = str(err.value)
    assert "good.pth" in msg and digest in msg and hashlib.sha256(bad_bytes).hexdigest() in msg
    assert not (cache / "good.pth").exists() and not (cache / "good.pth.part").exists()
    assert download(good.as_uri(), sha256=digest[:8], progress=False).read_bytes() == good.read_bytes()


class _Evil:
    marker = None

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, entry):
    marker = tmp_path / "pwned.txt"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": evil}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="weights_only"):
        load_checkpoint(path)
    name = entry("tmp_evil", path.as_uri(), swav_keys, filename="evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        create_model(name, pretrained=True, progress=False)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "t.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="t.pth"):
        load_checkpoint(path)


def test_shape_mismatch_names_first_key_and_both_shapes():
    model = resnet(**TINY)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    state["layer3.0.conv1.weight"] = torch.zeros(2, 2, 1, 1)
    with pytest.raises(ValueError) as err:
        load_backbone_state(model, state)
    msg = str(err.value)
    expected = tuple(model.layer2[0].conv1.weight.shape)
    assert "layer2.0.conv1.weight" in msg and "(3, 3, 3, 3)" in msg and str(expected) in msg
    assert "layer3" not in msg


def test_missing_and_unexpected_backbone_keys_are_listed():
    model = resnet(**TINY)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer4.0.bn2.")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # optional
    with pytest.raises(ValueError, match=r"missing backbone keys \(4\).*layer4\.0\.bn2\.weight"):
        load_backbone_state(model, state)
    state = dict(model.state_dict(), **{"projection_head.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys.*projection_head"):
        load_backbone_state(model, state)
    report = load_backbone_state(model, dict(model.state_dict(), **{"fc.weight": torch.zeros(9, 9)}))
    assert report["ignored"] == ["fc.weight"] and report["missing"] == []


def test_offline_error_names_file_url_and_exact_path(cache):
    url = unserved_url("models/resnet50-0676ba61.pth")
    with pytest.raises(WeightsUnavailableError) as err:
        create_model("supervised_r50", pretrained=True, weights_url=url, progress=False)
    msg = str(err.value)
    assert url in msg and "resnet50-0676ba61.pth" in msg and str(cache) in msg


def test_registered_checksum_applies_to_overrides_unless_disabled(tmp_path, entry):
    model = resnet(**TINY, num_classes=4)
    src = random_state(model, seed=3)
    path = tmp_path / "mirror.pth"
    torch.save(src, path)  # a different file from the one the entry's checksum describes
    name = entry("tmp_sup", "https://unreachable.invalid/w-0676ba61.pth", lambda sd: dict(sd),
                 sha256="0676ba61", method="supervised")
    with pytest.raises(ChecksumError, match="0676ba61"):
        create_model(name, pretrained=True, weights_url=path.as_uri(), progress=False)
    with pytest.raises(ValueError, match="load_head=True needs num_classes"):
        create_model(name, pretrained=True, load_head=True, weights_url=path.as_uri())
    model = create_model(name, pretrained=True, num_classes=4, load_head=True,
                         weights_url=path.as_uri(), check_hash=False, progress=False)
    assert torch.equal(model.fc.weight, src["fc.weight"]) and torch.equal(model.fc.bias, src["fc.bias"])
    _assert_backbone_equal(model, src)
    fresh = create_model(name, pretrained=True, num_classes=4, weights_url=path.as_uri(),
                         check_hash=False, progress=False)
    assert not torch.equal(fresh.fc.weight, src["fc.weight"])  # a fresh head stays fresh
