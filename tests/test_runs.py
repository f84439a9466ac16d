import os

from camtrap_ssl.core import fileio, provenance
from camtrap_ssl.train import rundir


def test_atomic_write_leaves_only_the_file(tmp_path):
    fileio.atomic_write_json(tmp_path / "a.json", {"x": 1})
    fileio.atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert os.listdir(tmp_path) == ["a.json"]
    assert fileio.read_json(tmp_path / "a.json") == {"x": 2}


def test_run_is_complete_only_after_summary(tmp_path):
    rd = rundir.RunDir(tmp_path / "r")
    rd.write_params({"a": 1})
    rd.write_metrics([{"epoch": 1, "val_top1": 50.0}])
    assert not rd.is_complete
    assert rundir.find_runs(tmp_path) == []
    assert [r.path for r in rundir.find_runs(tmp_path, complete_only=False)] == [rd.path]
    rd.write_summary({"final_top1": 50.0})
    assert rd.is_complete and rd.metrics() == [{"epoch": 1, "val_top1": 50.0}]


def test_environment_is_serialisable_and_versioned():
    env = provenance.environment()
    assert isinstance(env["torch"], str) and env["code_version"]
    fileio.fingerprint(env)
