"""The grid runs each (backbone, target) once as a papermill execution, then only reads it back."""
import json

import papermill
import pytest

from camtrap_ssl.experiments import grid
from camtrap_ssl.train import rundir


@pytest.fixture
def count_executions(monkeypatch):
    calls = []
    real = papermill.execute_notebook

    def counting(*args, **kwargs):
        calls.append(kwargs.get("parameters"))
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", counting)
    return calls


def test_notebook_declares_the_grid_parameters():
    declared = papermill.inspect_notebook(str(grid.NOTEBOOK))
    assert set(declared) == {"backbone", "target", "profile", "seed", "epochs", "runs_root"}


def test_unknown_names_fail_before_any_execution(tmp_path, count_executions):
    with pytest.raises(ValueError, match="backbones: unknown.*allowed"):
        grid.run_grid("supervised,simclrr", "syn_cifar", "tiny", runs_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="targets: unknown \\['syn_cifra'\\]"):
        grid.run_grid(["supervised"], ["syn_cifar", "syn_cifra"], "tiny", runs_root=tmp_path,
                      progress=False)
    with pytest.raises(ValueError, match="profile"):
        grid.run_grid(["supervised"], ["syn_cifar"], "huge", runs_root=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="camtrap-ssl data download ena24"):
        grid.run_grid(["supervised"], ["syn_cifar", "ena24"], "tiny", runs_root=tmp_path,
                      progress=False)
    assert count_executions == [] and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_grid_executes_once_then_skips(tmp_path, count_executions):
    df = grid.run_grid(["supervised"], ["syn_cifar"], "tiny", seed=0, runs_root=tmp_path, epochs=1,
                       progress=False)
    assert len(count_executions) == 1 and count_executions[0]["epochs"] == 1
    rd = tmp_path / "tiny" / "syn_cifar" / "supervised" / "seed0"
    assert df.loc[0, "run_dir"] == str(rd) and bool(df.loc[0, "executed"])
    assert rundir.RunDir(rd).is_complete and len(rundir.RunDir(rd).metrics()) == 1
    assert df.loc[0, "final_top1"] == rundir.RunDir(rd).summary()["final_top1"]
    nb = json.loads((rd / grid.EXECUTED).read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the learning curve
    assert not list(rd.glob(".*running*")) and not (rd / grid.FAILED).exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in rd.iterdir()}

    again = grid.run_grid("supervised", "syn_cifar", "tiny", seed=0, runs_root=tmp_path, epochs=1,
                          progress=False)
    assert len(count_executions) == 1 and not bool(again.loc[0, "executed"])
    assert again.drop(columns="executed").equals(df.drop(columns="executed"))
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir()} == stamps
    plan = grid.plan_grid("supervised", "syn_cifar", "tiny", runs_root=tmp_path)
    assert plan["complete"].tolist() == [True]


def test_cli_parser(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    grid.add_cli(p.add_subparsers(dest="command"))
    args = p.parse_args(["grid", "--backbones", "a,b", "--targets", "syn_cifar", "--profile", "tiny"])
    assert args.func is grid._cli_grid and args.epochs is None
    with pytest.raises(SystemExit, match="backbones: unknown"):
        args.func(args)
    with pytest.raises(SystemExit):
        p.parse_args(["grid", "--backbones", "a", "--targets", "x", "--profile", "huge"])
