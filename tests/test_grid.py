"""The grid runs each (backbone, target) once as a papermill execution, then only reads it back."""
import json

import papermill
import pytest

from camtrap_ssl.experiments import grid
from camtrap_ssl.experiments.spec import RunSpec, specs_from_args
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


def test_the_notebook_takes_the_spec_whole():
    """One parameter, the spec: a new RunSpec field reaches the notebook without another edit."""
    declared = papermill.inspect_notebook(str(grid.NOTEBOOK))
    assert set(declared) == {"spec"}
    default = json.loads(declared["spec"]["default"].replace("'", '"'))
    assert RunSpec.from_params(default).target == "syn_cifar"


def test_unknown_names_fail_before_any_execution(tmp_path, count_executions):
    with pytest.raises(ValueError, match="backbone='simclrr' is not allowed.*supervised"):
        grid.run_grid("supervised,simclrr", "syn_cifar", profile="tiny", runs_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="target='syn_cifra' is not allowed"):
        grid.run_grid(["supervised"], ["syn_cifar", "syn_cifra"], profile="tiny", runs_root=tmp_path,
                      progress=False)
    with pytest.raises(ValueError, match="profile='huge' is not allowed"):
        grid.run_grid(["supervised"], ["syn_cifar"], profile="huge", runs_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="epochs=0 is not allowed"):
        grid.run_grid(["supervised"], ["syn_cifar"], profile="tiny", runs_root=tmp_path, epochs=0,
                      progress=False)
    with pytest.raises(FileNotFoundError, match="camtrap-ssl data download ena24"):
        grid.run_grid(["supervised"], ["syn_cifar", "ena24"], profile="tiny", runs_root=tmp_path,
                      progress=False)
    assert count_executions == [] and not any(tmp_path.iterdir())


@pytest.mark.slow  # two notebook executions
def test_grid_executes_once_then_skips(tmp_path, count_executions):
    df = grid.run_grid(["supervised"], ["syn_cifar"], profile="tiny", seed=0, runs_root=tmp_path, epochs=1,
                       progress=False)
    assert len(count_executions) == 1 and count_executions[0]["spec"]["epochs"] == 1
    rd = RunSpec("supervised", "syn_cifar", "tiny", epochs=1, runs_root=tmp_path).run_dir()
    assert rd.parent == tmp_path / "tiny" / "syn_cifar" / "supervised"
    assert df.loc[0, "run_dir"] == str(rd) and bool(df.loc[0, "executed"])
    assert rundir.RunDir(rd).is_complete and len(rundir.RunDir(rd).metrics()) == 1
    assert df.loc[0, "top1"] == rundir.RunDir(rd).summary()["final_top1"]  # the shared result row
    nb = json.loads((rd / grid.EXECUTED).read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the learning curve
    assert not list(rd.glob(".*running*")) and not (rd / grid.FAILED).exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in rd.iterdir()}

    again = grid.run_grid("supervised", "syn_cifar", profile="tiny", seed=0, runs_root=tmp_path, epochs=1,
                          progress=False)
    assert len(count_executions) == 1 and not bool(again.loc[0, "executed"])
    assert again.drop(columns="executed").equals(df.drop(columns="executed"))
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir()} == stamps
    plan = grid.plan_grid("supervised", "syn_cifar", profile="tiny", runs_root=tmp_path, epochs=1)
    assert plan["complete"].tolist() == [True]

    # other epochs are another run: executed, not reported from the 1-epoch one (issue 14)
    assert grid.plan_grid("supervised", "syn_cifar", profile="tiny", runs_root=tmp_path,
                          epochs=2)["complete"].tolist() == [False]
    longer = grid.run_grid("supervised", "syn_cifar", profile="tiny", seed=0, runs_root=tmp_path, epochs=2,
                           progress=False)
    assert len(count_executions) == 2 and bool(longer.loc[0, "executed"])
    assert longer.loc[0, "epochs"] == 2 and longer.loc[0, "run_dir"] != str(rd)
    assert len(rundir.RunDir(longer.loc[0, "run_dir"]).metrics()) == 2


def test_cli_parser_is_the_run_specs(capsys):
    from camtrap_ssl import cli

    p = cli.build_parser()
    args = p.parse_args(["grid", "--backbones", "a,b", "--targets", "syn_cifar", "--profile", "tiny"])
    assert args.epochs is None and args.lr is None and args.runs_root is None
    with pytest.raises(ValueError, match="backbone='a' is not allowed"):
        specs_from_args(args)
    assert cli.main(["grid", "--backbones", "supervised", "--targets", "syn_cifar",
                     "--profile", "huge"]) == 2
    assert capsys.readouterr().err.startswith("camtrap-ssl grid: profile='huge' is not allowed")
