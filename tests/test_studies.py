import subprocess
import sys

import pytest

from camtrap_ssl.studies import params as studies


def test_every_notebook_declares_only_checkable_parameters():
    rules = studies.allowed_values()
    for name in studies.STUDIES:
        declared = studies.notebook_parameters(name)
        assert "profile" in declared and ("seed" in declared or "seeds" in declared)
        assert set(declared) <= set(rules), (name, set(declared) - set(rules))
        studies.check_params(name, declared)  # the defaults themselves are valid


def test_unknown_parameter_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"no parameter 'epoch'.*'epochs'"):
        studies.check_params("1", {"epoch": 3})


@pytest.mark.parametrize("params, word", [
    ({"profile": "huge"}, "profile"),
    ({"seeds": [-1]}, "seeds"),
    ({"backbones": ["supervised", "mocov3"]}, "backbones"),
    ({"datasets": []}, "datasets"),
    ({"epochs": 0}, "epochs"),
])
def test_out_of_range_values_are_refused(params, word):
    with pytest.raises(ValueError, match=rf"parameter {word}=.*must be"):
        studies.check_params("2", params)


def test_unknown_study_lists_the_studies():
    with pytest.raises(ValueError, match="allowed"):
        studies.check_params("5", {})


def test_cli_refuses_bad_input_before_any_compute(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", *args], capture_output=True,
                              text=True, timeout=120)

    r = run("study", "1", "-p", "profile", '"huge"', "--output-dir", str(tmp_path))
    assert r.returncode != 0 and "profile" in r.stderr and "tiny" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was executed or written
    r = run("finetune", "--backbone", "supervised", "--target", "mnist")
    assert r.returncode == 2 and "syn_serengeti" in r.stderr
    r = run("pretrain", "--method", "byol", "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "simclr" in r.stderr
    r = run("--help")
    assert r.returncode == 0 and "pretrain" in r.stdout and "book" in r.stdout


def test_explain_runs_on_real_camera_trap_jpegs(serengeti_samples, tmp_path):
    """Study 4's command on real Serengeti photos: large originals, night greyscale, crops."""
    from camtrap_ssl.studies import comparison


    pair = comparison.model_pair("simclr", "supervised", "syn_serengeti", "tiny",
                                 runs_root=tmp_path / "runs")
    table = comparison.explain_folder(pair, serengeti_samples, tmp_path / "out", ("gradcam", "scorecam"),
                                      size=32, limit=4, progress=False)
    pngs = sorted((tmp_path / "out").glob("*_saliency.png"))
    assert len(pngs) == 4 and all(p.stat().st_size > 1000 for p in pngs)
    assert len(table) == 8 and set(table.prediction) <= set(pair.classes)
    assert (tmp_path / "out" / "predictions.csv").exists()


def test_explain_cli_names_bad_methods_before_loading_anything(tmp_path):
    r = subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", "explain", str(tmp_path), "--out",
                        str(tmp_path / "o"), "--methods", "lime", "--profile", "tiny"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "lime" in r.stderr and "scorecam" in r.stderr
    assert not (tmp_path / "o").exists()
