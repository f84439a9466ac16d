"""Same seed, same run: across *processes*, since torch seeds its global generator randomly per
process and a draw from it would never show inside one interpreter."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtrap_ssl.experiments.backbones import SHIPPED, create_backbone

ROOT = Path(__file__).resolve().parents[1]


def _env(cache: Path) -> dict:
    """A fresh process of this checkout with its own cache (so each pretrains its own backbone)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "CAMTRAP_SSL_CACHE": str(cache)}


def _finetune(tmp: Path, name: str, seed: int) -> Path:
    """``camtrap-ssl finetune`` (tiny, 2 epochs) in a subprocess; its run directory."""
    root = tmp / name
    subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", "finetune", "--backbone", "supervised",
                    "--target", "syn_serengeti", "--profile", "tiny", "--epochs", "2",
                    "--seed", str(seed), "--runs-root", str(root / "runs")],
                   env=_env(root / "cache"), check=True, capture_output=True, cwd=tmp)
    (rd,) = (root / "runs").rglob("summary.json")
    return rd.parent


def _results(rd: Path):
    summary = json.loads((rd / "summary.json").read_text())
    summary.pop("wall_seconds")
    metrics = [{k: v for k, v in row.items() if k != "seconds"}
               for row in map(json.loads, (rd / "metrics.jsonl").read_text().splitlines())]
    model = torch.load(rd / "checkpoint.pt", weights_only=True)["model"]
    return summary, metrics, model, (rd / "predictions.npz").read_bytes()


@pytest.mark.slow
def test_same_seed_same_run_in_two_processes_other_seed_differs(tmp_path):
    a, b, c = (_results(_finetune(tmp_path, n, s)) for n, s in (("a", 0), ("b", 0), ("c", 1)))
    assert a[0] == b[0] and a[1] == b[1]  # every metric, bit for bit (JSON floats)
    assert a[3] == b[3]  # the per-image predictions, byte for byte
    assert a[2].keys() == b[2].keys()
    assert all(torch.equal(a[2][k], b[2][k]) for k in a[2])
    # another fine-tuning seed: another head, data order and augmentation
    assert not all(torch.equal(a[2][k], c[2][k]) for k in a[2] if a[2][k].is_floating_point())


PRETRAIN = """
import sys, torch
from camtrap_ssl.experiments.backbones import pretrain_backbone
torch.manual_seed(int(sys.argv[2]))  # whatever the process did before must not matter
pretrain_backbone(sys.argv[1], "tiny", 0, sys.argv[3], epochs=1, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "deepclusterv2"])
def test_pretraining_is_identical_in_two_processes(tmp_path, method):
    outs = []
    for k, noise in enumerate((11, 12345)):
        out = tmp_path / f"{method}{k}.pt"
        subprocess.run([sys.executable, "-c", PRETRAIN, method, str(noise), str(out)],
                       env=_env(tmp_path / f"cache{k}"), check=True, capture_output=True)
        outs.append(torch.load(out, weights_only=True)["state_dict"])
    assert outs[0].keys() == outs[1].keys()
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_fresh_head_ignores_the_global_generator():
    # a checkpoint file: its weights do not depend on the seed (an embedded name with seed 1
    # would pretrain another backbone), so only the head's draw can
    shipped = str(SHIPPED / "demo_supervised.pt")
    heads = []
    for noise in (1, 2):
        torch.manual_seed(noise)
        heads.append(create_backbone(shipped, 5, "demo", seed=0).fc.weight)
    assert torch.equal(*heads)
    assert not torch.equal(heads[0], create_backbone(shipped, 5, "demo", seed=1).fc.weight)


DETERMINISTIC = """
import sys, torch
from camtrap_ssl.train.finetune import FinetuneConfig, finetune
x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
ds = torch.utils.data.TensorDataset(x, torch.arange(8) % 2)
from camtrap_ssl.models import create_model
finetune(create_model("resnet10_w0125", num_classes=2), ds, ds, ["a", "b"],
         FinetuneConfig(epochs=1, batch_size=4, lr=1e-3, device="cpu", deterministic=True),
         sys.argv[1], progress=False)
"""


@pytest.mark.slow  # a subprocess: ~5 s of CPU, 20 s on a loaded machine
def test_deterministic_flag_is_recorded_in_the_run(tmp_path):
    subprocess.run([sys.executable, "-c", DETERMINISTIC, str(tmp_path / "run")],
                   env=_env(tmp_path / "cache"), check=True, capture_output=True)
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["finetune"]["deterministic"] is True
    assert params["runtime"]["deterministic_algorithms"] is True
    assert params["runtime"]["cudnn_benchmark"] is False
