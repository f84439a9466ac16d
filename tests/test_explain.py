"""``camtrap-ssl explain``: says what it will compute before doing it, takes finished runs,
refuses bad input before loading anything, and reports its time."""
import numpy as np
import pytest
import torch
from PIL import Image

from camtrap_ssl import cli
from camtrap_ssl.studies import comparison


def test_bad_runs_and_empty_folders_are_refused_first(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "params.json").write_text("{}")
    assert cli.main(["explain", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"), "--profile",
                     "tiny", "--ssl-run", str(tmp_path / "nope"), "--sl-run",
                     str(tmp_path / "half"), "--methods", "saliency,gradcamm"]) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith("camtrap-ssl explain: ")
    assert "--ssl-run: run " in msg and "nope' does not exist" in msg
    assert "--sl-run: " in msg and "is not a finished fine-tuning run (missing ['summary.json', " \
        "'checkpoint.pt'])" in msg
    assert "--folder: folder=" in msg and "holding images" in msg and "\n" not in msg
    assert "--methods: methods='gradcamm' is not allowed" in msg
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_file_is_accepted_as_a_backbone_name(tmp_path, capsys):
    assert cli.main(["explain", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--ssl-backbone", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "--ssl-backbone: ssl_backbone=" in err  # not a file: refused, with what is allowed
    assert "checkpoint file (.pt)" in err


@pytest.mark.slow
def test_plan_then_reuse_and_runs_given_by_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))  # no backbone pretrained yet
    runs = tmp_path / "runs"
    backbones = {"SSL": "simclr", "SL": "supervised"}
    plan = comparison.pair_plan(backbones, "syn_serengeti", "tiny", 0, runs)
    # an empty cache, and tiny backbones are not shipped: pretrain, then fine-tune
    assert [line.split(":")[0] for line in plan] == ["SSL", "SSL", "SL", "SL"]
    assert plan[0].startswith("SSL: pretrain simclr (tiny, seed 0) first")
    assert all("fine-tune" in line and "about" in line and "2 epochs" in line for line in plan[1::2])
    pair = comparison.model_pair("simclr", "supervised", "syn_serengeti", "tiny", 0, runs,
                                 progress=True)
    assert "camtrap-ssl explain will:" in capsys.readouterr().out
    plan = comparison.pair_plan(backbones, "syn_serengeti", "tiny", 0, runs)
    assert [line.split(":")[0] for line in plan] == ["SSL", "SL"]  # one line per side
    assert all("reuse the finished run" in line for line in plan)
    ssl_dir, sl_dir = pair.run_dirs.values()
    by_path = comparison.model_pair("ignored", "ignored", "syn_serengeti", "tiny", 0,
                                    tmp_path / "elsewhere", ssl_run=f"{ssl_dir}/checkpoint.pt",
                                    sl_run=sl_dir)
    assert list(by_path.models) == list(pair.models) and by_path.classes == pair.classes
    x = torch.rand(2, 3, 32, 32)
    for a, b in zip(pair.models.values(), by_path.models.values()):
        assert torch.equal(a(x), b(x))
    assert not (tmp_path / "elsewhere").exists()  # nothing trained for the given runs
    (tmp_path / "imgs").mkdir()
    for k in range(2):
        Image.fromarray(np.full((30, 40, 3), 60 * k, dtype=np.uint8)).save(tmp_path / "imgs" / f"{k}.jpg")
    table = comparison.explain_folder(by_path, tmp_path / "imgs", tmp_path / "out", ("gradcam",),
                                      size=32, progress=False)
    assert table.attrs["images"] == 2 and table.attrs["seconds_per_image"] > 0
