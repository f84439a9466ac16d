"""One run specification: one check for every entry point, and an identity that names the run
directory after everything that changes a run's numbers."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtrap_ssl.core import paths
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, get_profile
from camtrap_ssl.experiments import backbones, finetuning
from camtrap_ssl.experiments.spec import (
    RunSpec,
    add_arguments,
    grid_specs,
    specs_from_args,
)

ROOT = Path(__file__).resolve().parents[1]
OK = {"backbone": "supervised", "target": "syn_cifar", "profile": "tiny"}


@pytest.mark.parametrize("field, value, allowed", [
    ("seed", "0", "integer >= 0"),
    ("seed", -1, "integer >= 0"),
    ("seed", True, "integer >= 0"),
    ("epochs", 0, r"\[1, 10000\]"),
    ("epochs", 10_001, r"\[1, 10000\]"),
    ("epochs", 10 ** 20, r"\[1, 10000\]"),
    ("epochs", 2.0, r"\[1, 10000\]"),
    ("lr", float("nan"), "finite number > 0"),
    ("lr", float("inf"), "finite number > 0"),
    ("lr", 0.0, "finite number > 0"),
    ("lr", "1e-3", "finite number > 0"),
    ("profile", "huge", r"\['demo', 'paper', 'tiny'\]"),
    ("target", "mnist", "syn_serengeti.*serengeti"),
    ("backbone", "alexnet", r"supervised.*\(\.pt\)"),
    ("backbone", "/no/such/file.pt", r"supervised.*\(\.pt\)"),
    ("convergence_tolerance", -0.5, ">= 0"),
    ("lock_timeout", float("nan"), ">= 0"),
    ("runs_root", 3, "folder path"),
])
def test_bad_values_are_refused_naming_the_field_and_what_is_allowed(field, value, allowed):
    with pytest.raises(ValueError, match=rf"^{field}=.* is not allowed; {field} must be .*{allowed}"):
        RunSpec(**{**OK, field: value})


def test_paper_targets_and_checkpoint_files_are_accepted(tmp_path):
    own = tmp_path / "mine.pt"
    own.write_bytes(backbones.backbone_checkpoint("simclr", "tiny").read_bytes())
    for target in ("serengeti", "nacti", "ena24", "cifar10", "cifar100"):
        assert RunSpec("supervised", target, "tiny").target == target
    spec = RunSpec(own, "syn_cifar", "tiny")  # a Path works too, and is kept as its string
    assert spec.backbone == str(own)
    assert RunSpec("supervised", "syn_cifar").profile == get_profile(DEFAULT_PROFILE)


@pytest.mark.slow  # a fresh process
def test_the_run_directory_changes_with_what_changes_the_numbers_only(tmp_path):
    base = RunSpec(**OK, runs_root=tmp_path)
    rd = base.run_dir()
    tiny = get_profile("tiny")
    assert rd.parent == tmp_path / "tiny" / "syn_cifar" / "supervised"
    assert rd.name.startswith(f"seed0-e{tiny.finetune_epochs}-") and len(rd.name.split("-")[-1]) == 8
    # the profile's budget asked by name or by number is the same run
    assert base.replace(epochs=tiny.finetune_epochs).run_dir() == rd
    assert base.replace(lr=tiny.lr).run_dir() == rd
    # where and how are not identity
    for same in (base.replace(convergence_tolerance=2.0), base.replace(lock_timeout=5)):
        assert same.run_dir() == rd
    assert base.replace(runs_root=tmp_path / "other").run_dir().name == rd.name
    # anything that changes the numbers is another run
    others = [base.replace(epochs=1), base.replace(lr=5e-4), base.replace(seed=1),
              base.replace(profile=get_profile("tiny", weight_decay=0.0)),
              base.replace(profile=get_profile("tiny", input_size=48))]
    dirs = {o.run_dir() for o in others}
    assert rd not in dirs and len(dirs) == len(others)
    # the same request in a fresh process names the same directory
    code = ("import sys; from camtrap_ssl.experiments.spec import RunSpec; "
            "print(RunSpec('supervised', 'syn_cifar', 'tiny', runs_root=sys.argv[1]).run_dir())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert out.stdout.strip() == str(rd), out.stderr[-2000:]


def test_a_checkpoint_file_is_identified_by_its_content(tmp_path):
    own = tmp_path / "mine.pt"
    own.write_bytes(backbones.backbone_checkpoint("simclr", "tiny").read_bytes())
    first = RunSpec(str(own), "syn_cifar", "tiny", runs_root=tmp_path).run_dir()
    assert first.parent.name == "mine"
    state = torch.load(own, weights_only=True)
    state["record"]["wall_seconds"] += 1
    torch.save(state, own)  # same file name, other content
    assert RunSpec(str(own), "syn_cifar", "tiny", runs_root=tmp_path).run_dir() != first


def test_the_runs_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_RUNS", str(tmp_path / "elsewhere"))
    rd = RunSpec(**OK).run_dir()
    assert rd.is_relative_to(tmp_path / "elsewhere") and paths.runs_root() == tmp_path / "elsewhere"
    assert RunSpec(**OK, runs_root=tmp_path / "given").run_dir().is_relative_to(tmp_path / "given")


def _parser(many=False):
    p = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(p, many=many)
    return p


def test_one_set_of_options_for_finetune_grid_and_torchrun(tmp_path):
    own = tmp_path / "mine.pt"
    own.write_bytes(backbones.backbone_checkpoint("simclr", "tiny").read_bytes())
    spec, = specs_from_args(_parser().parse_args(
        ["--backbone", str(own), "--target", "serengeti", "--profile", "tiny", "--epochs", "3",
         "--lr", "1e-4", "--runs-root", str(tmp_path)]))
    assert (spec.backbone, spec.target, spec.epochs, spec.lr) == (str(own), "serengeti", 3, 1e-4)
    assert spec.runs_root == tmp_path
    specs = specs_from_args(_parser(many=True).parse_args(
        ["--backbones", "supervised,simclr,supervised", "--targets", "syn_cifar,syn_ena24"]))
    assert [(s.backbone, s.target) for s in specs] == [
        ("supervised", "syn_cifar"), ("simclr", "syn_cifar"),
        ("supervised", "syn_ena24"), ("simclr", "syn_ena24")]
    assert specs == grid_specs(["supervised", "simclr"], "syn_cifar,syn_ena24")
    with pytest.raises(argparse.ArgumentError, match="expected an integer, got '1e20'"):
        _parser().parse_args(["--backbone", "x", "--target", "y", "--epochs", "1e20"])
    with pytest.raises(ValueError, match="^epochs=20000 is not allowed"):
        specs_from_args(_parser().parse_args(["--backbone", "supervised", "--target", "syn_cifar",
                                              "--epochs", "20000"]))
    with pytest.raises(ValueError, match="^backbones=.* at least one name"):
        grid_specs(",", "syn_cifar")


def test_finetune_run_refuses_before_writing_anything(tmp_path):
    for kw in ({"epochs": 0}, {"seed": "0"}, {"seed": -1}, {"lr": float("nan")}, {"lr": float("inf")}):
        with pytest.raises(ValueError, match=f"^{next(iter(kw))}="):
            finetuning.finetune_run(RunSpec("supervised", "syn_cifar", "tiny", runs_root=tmp_path,
                                            **kw), progress=False)
    assert not any(tmp_path.iterdir())  # no params.json left to block the correct call


@pytest.fixture
def no_data_loading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the target was loaded before the runs root was checked")
    monkeypatch.setattr(finetuning, "get_target", refuse)
    monkeypatch.setattr(finetuning, "load_spec_target", refuse)


def test_a_runs_root_that_is_a_file_is_refused_before_training(tmp_path, no_data_loading):
    root = tmp_path / "runs"
    root.write_text("not a folder")
    with pytest.raises(ValueError, match=rf"runs_root='{root}' is a file"):
        finetuning.finetune_run(RunSpec("supervised", "syn_cifar", "tiny", runs_root=root),
                                progress=False)


def test_a_read_only_runs_root_is_refused_before_training(tmp_path, no_data_loading):
    if os.geteuid() == 0:  # root writes through permissions; /sys refuses even root
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no read-only folder to try")
        root = Path("/sys/camtrap_ssl_runs")
    else:
        root = tmp_path / "ro"
        root.mkdir()
        root.chmod(0o555)
    with pytest.raises(ValueError, match=rf"runs_root='{root}' cannot be written"):
        finetuning.finetune_run(RunSpec("supervised", "syn_cifar", "tiny", runs_root=root),
                                progress=False)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", *args], capture_output=True,
                          text=True, timeout=180, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.mark.slow  # three CLI processes
def test_cli_refusals_are_one_line_with_status_2(tmp_path):
    r = _cli("finetune", "--backbone", "supervised", "--target", "syn_cifar", "--profile", "tiny",
             "--epochs", "0", "--runs-root", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("camtrap-ssl finetune: epochs=0 is not allowed")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # a paper target is a target: accepted, then refused only because its data are absent
    r = _cli("finetune", "--backbone", "supervised", "--target", "serengeti", "--profile", "tiny",
             "--runs-root", str(tmp_path), env={"CAMTRAP_SSL_DATA": str(tmp_path / "data")})
    assert r.returncode == 2 and r.stderr.startswith("camtrap-ssl finetune: serengeti: no COCO")
    assert "camtrap-ssl data download serengeti" in r.stderr
    r = _cli("grid", "--backbones", "supervised", "--targets", "syn_cifar", "--lr", "nan",
             "--runs-root", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("camtrap-ssl grid: lr=nan is not allowed")
    assert not any(tmp_path.iterdir())


def test_the_launcher_takes_the_same_options_and_lands_in_the_same_run(tmp_path, capsys):
    from camtrap_ssl.experiments import launch

    assert launch.main(["--backbone", "supervised", "--target", "syn_cifar", "--profile", "tiny",
                        "--seed", "-1"]) == 2
    assert "seed=-1 is not allowed" in capsys.readouterr().err
    spec = RunSpec("supervised", "syn_cifar", "tiny", runs_root=tmp_path, epochs=1)
    summary, rd = finetuning.finetune_run(spec, progress=False)
    assert launch.main(["--backbone", "supervised", "--target", "syn_cifar", "--profile", "tiny",
                        "--epochs", "1", "--runs-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(rd)  # reused, not trained again
    assert finetuning.finetune_run(spec, progress=False) == (summary, rd)


def test_a_real_dataset_is_identified_by_its_files_and_fine_tunes(tmp_path, monkeypatch):
    """A paper target on a fabricated LILA folder: its JSON and gold-standard list are identity."""
    import warnings

    from test_paper_targets import make_lila

    monkeypatch.setenv("CAMTRAP_SSL_DATA", str(tmp_path / "data"))
    json_path, images = make_lila(tmp_path / "data" / "serengeti")
    spec = RunSpec("supervised", "serengeti", "tiny", epochs=1, runs_root=tmp_path / "runs")
    rd = spec.run_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 classes, not the study's 48
        summary, got = finetuning.finetune_run(spec, progress=False)
    assert got == rd and summary["epochs"] == 1
    assert finetuning.finetune_run(spec, progress=False) == (summary, rd)  # reused
    (json_path.parent / "gold_standard_ids.txt").write_text(images[1]["id"] + "\n")
    assert RunSpec("supervised", "serengeti", "tiny", epochs=1,
                   runs_root=tmp_path / "runs").run_dir() != rd


def test_replicates_continue_the_seeds_on_the_targets_they_name():
    """A key comparison's extra runs: the named target runs ``n`` seeds (the first ``n`` given,
    continued past the largest), each from its own pretraining seed where seeded; the others
    keep ``seeds``."""
    from camtrap_ssl.experiments.spec import grid_specs, replicate_seeds

    assert replicate_seeds([0, 1, 2], 6) == [0, 1, 2, 3, 4, 5]
    assert replicate_seeds([4, 7], 4) == [4, 7, 8, 9]
    assert replicate_seeds([0, 1, 2], 2) == [0, 1]
    assert replicate_seeds([0, 1, 2], None) == [0, 1, 2]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="replicates"):
            replicate_seeds([0], bad)
    specs = grid_specs(["supervised", "simclr"], ["syn_serengeti", "syn_cifar"], [0, 1, 2],
                       profile="tiny", seeded_pretraining=["simclr"], replicates={"syn_serengeti": 5})
    runs = {}
    for s in specs:
        runs.setdefault((s.target, s.backbone), []).append((s.seed, s.pretrain_seed))
    assert runs[("syn_serengeti", "simclr")] == [(k, k) for k in range(5)]
    assert runs[("syn_serengeti", "supervised")] == [(k, 0) for k in range(5)]
    assert runs[("syn_cifar", "simclr")] == [(k, k) for k in range(3)]


def test_replicates_name_a_target_by_path_as_the_specs_keep_it(tmp_path, monkeypatch):
    """Own data given by a relative path in ``replicates`` and by an absolute one in ``targets``
    (or the other way round) is one target: its runs get the replicates, and a bad count or a
    target that is neither a name nor a path is refused before any spec is built."""
    from camtrap_ssl.experiments.spec import grid_specs

    (tmp_path / "mine" / "zebra").mkdir(parents=True)
    (tmp_path / "mine" / "zebra" / "a.jpg").write_bytes(b"\xff\xd8")  # detected by extension only
    monkeypatch.chdir(tmp_path)
    for given, key in ((str(tmp_path / "mine"), "mine"), ("mine", str(tmp_path / "mine"))):
        specs = grid_specs(["supervised"], [given], [0, 1], profile="tiny", replicates={key: 4})
        assert [s.seed for s in specs] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"replicates\['mine'\]"):
        grid_specs(["supervised"], ["mine"], [0], profile="tiny", replicates={"mine": 0})
    with pytest.raises(ValueError, match="replicates target"):
        grid_specs(["supervised"], ["mine"], [0], profile="tiny", replicates={"nowhere": 2})
