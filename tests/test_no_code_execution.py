"""No file the package reads may run code: a pickle that would create a marker file when
unpickled is planted at every path the package reads a checkpoint from, and each read must be
refused with the marker absent (weights cache, ``weights_url``, ``CAMTRAP_SSL_WEIGHTS_URL_*``,
shipped and retrained embedded backbones, the pretraining resume state, a run's
``checkpoint.pt``, a ``.pt`` backbone given to the studies)."""
import pickle

import numpy as np
import pytest
import torch

from camtrap_ssl.experiments import backbones
from camtrap_ssl.models import UnsafeCheckpointError, create_model
from camtrap_ssl.models.weights import load_checkpoint
from camtrap_ssl.pretrain.loop import PretrainConfig, pretrain
from camtrap_ssl.train.finetune import FinetuneConfig, finetune, load_finetuned

ZOO = "supervised_r50"  # a zoo entry with published weights


class _RunsCode:
    """Unpickling this calls ``open(marker, 'w')``: the file appears iff pickle ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def plant(tmp_path):
    marker = tmp_path / "CODE_RAN"

    def write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {"w": torch.zeros(1)}, "record": _RunsCode(marker),
                    "model": _RunsCode(marker)}, path)
        return path

    write.marker = marker
    return write


#: what each refusal is checked for; the tests of the loaders that users point at files
#: parametrize over them, so that a failure says which of the two broke
ASPECTS = ("runs nothing", "says why")


def refused(plant, call, aspect=None):
    """``call()`` must be refused. ``"runs nothing"``: the planted pickle did not run (its
    marker file is absent). ``"says why"``: the message names the global the file asked for
    and gives no advice to load it anyway (``weights_only=False``, allow-listing the global).
    ``None`` checks both."""
    with pytest.raises((UnsafeCheckpointError, pickle.UnpicklingError)) as err:
        call()
    msg = str(err.value)
    if aspect in (None, "runs nothing"):
        assert not plant.marker.exists(), "the planted pickle ran"
    if aspect in (None, "says why"):
        flat = msg.replace("`", "").replace(" set to ", "=")
        assert "weights_only=False" not in flat and "safe_globals" not in flat, msg
        assert "GLOBAL io.open" in msg, msg
    return msg


def test_the_planted_pickle_runs_code_when_loaded_unsafely(plant, tmp_path):
    """The control: the marker appears when the planted file is unpickled, so its absence in
    the tests below means the package refused to run it."""
    torch.load(plant(tmp_path / "evil.pt"), weights_only=False)
    assert plant.marker.exists()


# These loads call torch.load(weights_only=True) directly, so nothing runs, but torch's refusal
# advises retrying with weights_only=False; routing them through models.weights.load_checkpoint
# fixes the message (train/finetune.py, experiments/backbones.py, pretrain.loop.backbone_from_checkpoint).
def test_plain_state_dicts_still_load(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(3), "meta": {"epoch": 2, "rng": torch.zeros(4, dtype=torch.uint8)}}, path)
    assert load_checkpoint(path)["meta"]["epoch"] == 2


def test_weights_cache_url_override_and_env_var(plant, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    from camtrap_ssl.models import get_entry
    plant(cache / get_entry(ZOO).weights.filename)
    msg = refused(plant, lambda: create_model(ZOO, pretrained=True, cache_dir=cache,
                                              check_hash=False, progress=False))
    assert "GLOBAL io.open" in msg and "refused to load" in msg
    evil = plant(tmp_path / "elsewhere" / "evil.pth")
    refused(plant, lambda: create_model(ZOO, pretrained=True, weights_url=str(evil),
                                        cache_dir=tmp_path / "c2", check_hash=False, progress=False))
    monkeypatch.setenv("CAMTRAP_SSL_WEIGHTS_URL_" + ZOO.upper(), evil.as_uri())
    refused(plant, lambda: create_model(ZOO, pretrained=True, cache_dir=tmp_path / "c3",
                                        check_hash=False, progress=False))


@pytest.mark.parametrize("aspect", ASPECTS)
def test_shipped_and_retrained_embedded_backbones(plant, tmp_path, monkeypatch, aspect):
    monkeypatch.setattr(backbones, "SHIPPED", tmp_path / "shipped")
    plant(tmp_path / "shipped" / "tiny_simclr.pt")
    refused(plant, lambda: backbones.create_backbone("simclr", 3, "tiny", seed=0), aspect)
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    plant(tmp_path / "cache" / "backbones" / "seed3" / "tiny_barlowtwins.pt")
    refused(plant, lambda: backbones.create_backbone("barlowtwins", 3, "tiny", pretrain_seed=3),
            aspect)


@pytest.mark.parametrize("aspect", ASPECTS)
def test_checkpoint_file_backbone_given_to_studies(plant, tmp_path, aspect):
    evil = str(plant(tmp_path / "mine.pt"))
    refused(plant, lambda: backbones.describe_backbone(evil), aspect)
    refused(plant, lambda: backbones.create_backbone(evil, 3), aspect)


def test_pretraining_resume_state(plant, tmp_path):
    out = tmp_path / "bb.pt"
    plant(out.with_name(out.name + ".state"))
    images = np.zeros((8, 16, 16, 3), dtype=np.uint8)
    cfg = PretrainConfig(method="simclr", arch="resnet10_w0125", epochs=1, batch_size=4,
                         input_size=16)
    msg = refused(plant, lambda: pretrain(cfg, images, None, out, progress=False))
    assert str(out) + ".state" in msg and "delete" in msg
    assert not out.exists()


@pytest.mark.parametrize("aspect", ASPECTS)
def test_run_checkpoint_on_resume_and_on_load(plant, tmp_path, aspect):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    data = [(torch.rand(3, 4, 4), k % 2) for k in range(4)]
    run_dir = tmp_path / "run"
    plant(run_dir / "checkpoint.pt")
    cfg = FinetuneConfig(epochs=1, batch_size=2, augmentation="none", device="cpu")
    refused(plant, lambda: finetune(model, data, data, ["a", "b"], cfg, run_dir, progress=False),
            aspect)
    refused(plant, lambda: load_finetuned(run_dir, model), aspect)
