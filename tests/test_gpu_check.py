"""benchmarks/gpu_check.py in --smoke mode: every section runs on CPU and lands in the one JSON.

The full check needs a GPU this suite never has; smoke mode keeps the script from rotting until a
session with one runs it.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]),
                                                         os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def test_smoke_run_writes_every_section_with_its_figures(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(out.read_text())
    assert d["smoke"] is True and d["finished"] is True
    s = d["sections"]
    assert set(s) == {"finetune", "scorecam", "featvis", "ddp"}
    assert all(v["ok"] is True and v["seconds"] > 0 for v in s.values())
    ft = s["finetune"]
    assert ft["images_per_s"] > 0 and ft["study_epoch_minutes"] == 120
    # minutes per Serengeti epoch follow from the measured rate (757,000 images, 90 % trained on)
    assert ft["serengeti_epoch_minutes"] == pytest.approx(757_000 * 0.9 / ft["images_per_s"] / 60)
    assert s["scorecam"]["finite"] and s["scorecam"]["map_shape"] == [1, 1, 32, 32]
    assert s["featvis"]["image_shape"][:2] == [32, 32]
    assert s["ddp"]["world_size"] == 2 and s["ddp"]["backend"] == "gloo" and s["ddp"]["images_per_s"] > 0


def test_a_failing_section_keeps_the_others_and_fails_the_exit_code(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def broken(cfg):
        raise RuntimeError("CUDA error: out of memory (simulated)")

    monkeypatch.setitem(mod.SECTIONS, "scorecam", broken)
    out = tmp_path / "check.json"
    assert mod.main(["--smoke", "--out", str(out), "--sections", "scorecam,featvis"]) == 1
    s = json.loads(out.read_text())["sections"]
    assert s["scorecam"]["ok"] is False and "out of memory" in s["scorecam"]["error"]
    assert s["featvis"]["ok"] is True


def test_without_cuda_the_full_check_refuses_in_one_line(tmp_path):
    pytest.importorskip("torch")
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the full check would run")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--smoke" in proc.stderr and not (tmp_path / "x.json").exists()
