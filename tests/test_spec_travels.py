"""Every field of RunSpec travels intact through every entry point (issue 19).

A field is born once, in :class:`RunSpec`; the command line, the papermill round trip of the run
notebook, ``run_grid``, the torchrun launcher and the study notebooks all pass it on without
listing it. :data:`NON_DEFAULT` holds a value other than the default for every field, and the
first test fails when a field is added without one, so every later field is checked too.
"""
import json
from dataclasses import MISSING, fields

import pytest

from camtrap_ssl import cli
from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.experiments import grid, launch
from camtrap_ssl.experiments.spec import RunSpec, add_arguments, specs_from_args
from camtrap_ssl.train import rundir

BASE = {"backbone": "supervised", "target": "syn_serengeti", "profile": "tiny"}
# one non-default value per field (runs_root, a path, is filled in per test)
NON_DEFAULT = {"backbone": "simclr", "target": "syn_serengeti", "profile": "tiny", "seed": 1,
               "pretrain_seed": 1, "epochs": 1, "lr": 5e-4, "label_fraction": 0.5,
               "precision": "fp32", "augmentation": "none", "crop": 28, "strip": 0.1,
               "runs_root": "RUNS", "convergence_tolerance": 2.0, "lock_timeout": 30.0}
OUTSIDE_IDENTITY = {"runs_root", "convergence_tolerance", "lock_timeout"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_every_field_has_a_non_default_value_here():
    names = [f.name for f in fields(RunSpec)]
    assert sorted(NON_DEFAULT) == sorted(names)
    for f in fields(RunSpec):
        if f.default is not MISSING:
            assert NON_DEFAULT[f.name] != f.default, f.name
    assert {f.name for f in fields(RunSpec) if not f.metadata["identity"]} == OUTSIDE_IDENTITY


@pytest.mark.parametrize("name", [f.name for f in fields(RunSpec) if f.name not in ("backbone", "target")])
def test_each_field_survives_argparse_and_the_papermill_round_trip(name, tmp_path):
    value = str(tmp_path) if NON_DEFAULT[name] == "RUNS" else NON_DEFAULT[name]
    parser = cli.build_parser()
    args = parser.parse_args(["finetune", "--backbone", "supervised", "--target", "syn_serengeti",
                              "--profile", "tiny", _flag(name), str(value)])
    spec, = specs_from_args(args)
    got = getattr(spec, name)
    want = get_profile(value) if name == "profile" else value
    assert (str(got) if name == "runs_root" else got) == want
    # the run notebook's parameter: JSON-safe, and back to the same spec
    params = json.loads(json.dumps(spec.to_params()))
    assert RunSpec.from_params(params) == spec and params[name] == value
    # the grid's parser makes the same spec
    g = argparse_grid(name, value)
    assert [s for s in g] == [spec]


def argparse_grid(name, value):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p, many=True)
    return specs_from_args(p.parse_args(["--backbones", "supervised", "--targets", "syn_serengeti",
                                         "--profile", "tiny", _flag(name), str(value)]))


def test_a_profile_with_overrides_round_trips_whole():
    prof = get_profile("tiny", weight_decay=0.0, camtrap_size=(72, 54), finetune_seeds=(3, 4))
    spec = RunSpec(**{**BASE, "profile": prof})
    params = json.loads(json.dumps(spec.to_params()))
    assert params["profile"] == {"name": "tiny", "weight_decay": 0.0, "camtrap_size": [72, 54],
                                 "finetune_seeds": [3, 4]}
    back = RunSpec.from_params(params)
    assert back == spec and back.profile == prof and back.run_dir() == spec.run_dir()
    with pytest.raises(ValueError, match="'colour' is not a RunSpec field"):
        RunSpec.from_params({**params, "colour": "red"})


def test_the_protocol_belongs_to_the_target_and_is_identity():
    cifar, camtrap = RunSpec("supervised", "cifar10", "paper"), RunSpec("supervised", "serengeti", "paper")
    assert cifar.protocol() == {"augmentation": "crop_flip", "crop": 224, "strip": 0.0}
    assert camtrap.protocol() == {"augmentation": "norouzzadeh", "crop": 224,
                                  "strip": get_profile("paper").strip_fraction}
    assert cifar.config().augmentation == "crop_flip"
    # overridable, and another override is another run
    base = RunSpec(**BASE)
    for change in ({"augmentation": "none"}, {"crop": 28}, {"strip": 0.2}, {"precision": "fp32"},
                   {"pretrain_seed": 1}):
        assert base.replace(**change).identity != base.identity, change
    with pytest.raises(ValueError, match="strip=0.1 is not allowed.*no information strip"):
        RunSpec("supervised", "cifar10", "paper", strip=0.1)
    with pytest.raises(ValueError, match="crop=40 is not allowed; crop must be at most the stored side"):
        RunSpec(**BASE, crop=40)
    with pytest.raises(ValueError, match="pretrain_seed=2 is not allowed.*only the embedded"):
        RunSpec("supervised_r50", "syn_cifar", "tiny", pretrain_seed=2)


# -- one tiny run per entry point, every field non-default at once ---------------------------------
def _expected(root) -> RunSpec:
    return RunSpec(**{**NON_DEFAULT, "runs_root": str(root)})


def _argv(spec: RunSpec, many: bool = False) -> list[str]:
    out = []
    for k, v in spec.to_params().items():
        flag = _flag(k) + ("s" if many and k in ("backbone", "target") else "")
        out += [flag, str(v)]
    return out


def _check_arrived(spec: RunSpec, rd):
    """Identity fields in params.json; the others where they act."""
    run = rundir.RunDir(rd)
    assert run.is_complete
    recorded = run.params()["spec"]
    for f in fields(RunSpec):
        if f.metadata["identity"]:
            assert recorded[f.name] == spec.to_params()[f.name], f.name
    assert str(rd).startswith(str(spec.root))  # runs_root: where the run is
    summary = run.summary()
    assert summary["convergence_tolerance"] == spec.convergence_tolerance
    params = run.params()
    assert params["finetune"]["precision"] == "fp32" and params["finetune"]["lr"] == spec.lr
    assert params["preprocessing"]["augmentation"] == "none"
    assert params["preprocessing"]["eval_crop"].startswith(f"centre {spec.crop} of")
    assert params["labels"]["fraction"] == spec.label_fraction
    assert "bottom" in params["data"]["strip"] and "fraction 0.1" in params["data"]["strip"]


@pytest.fixture
def lock_timeouts(monkeypatch):
    seen = []
    real = rundir.locked

    def recording(path, timeout=None, *a, **k):
        seen.append(timeout)
        return real(path, timeout, *a, **k)

    monkeypatch.setattr(rundir, "locked", recording)
    return seen


@pytest.mark.slow  # pretrains a tiny SimCLR with seed 1 once, then fine-tunes
def test_finetune_cli_and_launcher_carry_every_field(tmp_path, lock_timeouts, capsys):
    spec = _expected(tmp_path / "cli")
    assert cli.main(["finetune", *_argv(spec)]) == 0
    rd = spec.run_dir()
    _check_arrived(spec, rd)
    assert lock_timeouts == [spec.lock_timeout]
    spec = _expected(tmp_path / "launch")
    assert launch.main(_argv(spec)) == 0
    _check_arrived(spec, spec.run_dir())
    assert lock_timeouts[-1] == spec.lock_timeout
    assert capsys.readouterr().out.splitlines()[-2] == str(spec.run_dir())


def _notebook_spec(rd) -> dict:
    nb = json.loads((rd / grid.EXECUTED).read_text())
    text = "".join(t for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                   for t in o.get("text", []))
    line = next(x for x in text.splitlines() if x.startswith("spec: "))
    return json.loads(line.removeprefix("spec: "))


@pytest.mark.slow  # two papermill executions
def test_grid_cli_and_run_grid_carry_every_field_into_the_notebook(tmp_path):
    spec = _expected(tmp_path / "grid-cli")
    assert cli.main(["grid", "--quiet", *_argv(spec, many=True)]) == 0
    _check_arrived(spec, spec.run_dir())
    assert _notebook_spec(spec.run_dir()) == spec.to_params()  # all fields, lock_timeout too
    spec = _expected(tmp_path / "run-grid")
    fields_ = {k: v for k, v in spec.to_params().items() if k not in ("backbone", "target", "seed")}
    df = grid.run_grid([spec.backbone], [spec.target], seeds=[spec.seed], progress=False, **fields_)
    assert df.run_dir.tolist() == [str(spec.run_dir())] and df.pretrain_seed.tolist() == [1]
    _check_arrived(spec, spec.run_dir())
    assert _notebook_spec(spec.run_dir()) == spec.to_params()


@pytest.mark.slow  # one study notebook
def test_a_study_notebook_passes_the_fields_it_does_not_vary_through(tmp_path):
    from camtrap_ssl.studies.params import execute_study

    spec = _expected(tmp_path / "runs")
    others = {k: v for k, v in spec.to_params().items()
              if k not in ("backbone", "target", "profile", "seed", "epochs", "runs_root",
                           "convergence_tolerance")}
    execute_study(1, tmp_path / "book", progress=False, profile="tiny", seeds=[spec.seed],
                  epochs=spec.epochs, runs_root=str(spec.root), backbones=[spec.backbone],
                  datasets=[spec.target], convergence_tolerance=spec.convergence_tolerance,
                  run_options=others)
    _check_arrived(spec, spec.run_dir())
