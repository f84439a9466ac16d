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
# one non-default value per field; "TARGET", "IMAGES" and "RUNS" are paths filled in per test: the
# target is the tiny Serengeti stand-in's COCO Camera Traps file given by path, so that the data
# options of a user's own target (images, classes, min_images, split, multi_label) apply too
NON_DEFAULT = {"backbone": "simclr", "target": "TARGET", "profile": "tiny", "seed": 1,
               "pretrain_seed": 1, "epochs": 1, "lr": 5e-4, "label_fraction": 0.5,
               "precision": "fp32", "augmentation": "none", "crop": 28, "strip": 0.1,
               "images": "IMAGES", "classes": {"human": None}, "min_images": 6,
               "split": "sequence", "multi_label": "per_category",
               "view": "box", "box_margin": 0.2, "detections": "DETECTIONS",
               "detection_threshold": 0.3,
               "runs_root": "RUNS", "convergence_tolerance": 2.0, "lock_timeout": 30.0}
OUTSIDE_IDENTITY = {"runs_root", "convergence_tolerance", "lock_timeout"}
# fields that act only beside others (the box view's options need view="box")
NEEDS = {"box_margin": ["view"], "detections": ["view"], "detection_threshold": ["view", "detections"]}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.fixture(scope="module")
def world():
    """The tiny Serengeti stand-in's COCO Camera Traps JSON: a target given by path, with a
    MegaDetector batch output beside it whose boxes are the annotated ones (conf 0.9; one
    decoy at 0.1 per image, below the threshold asked)."""
    from camtrap_ssl.data import synthetic

    path = synthetic.camtrap_world("serengeti", "tiny")
    data = json.loads(path.read_text())
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    dets = {}
    for a in data["annotations"]:
        if a.get("bbox"):
            w, h = size[a["image_id"]]
            x, y, bw, bh = a["bbox"]
            dets.setdefault(a["image_id"], []).append(
                {"category": "1", "conf": 0.9, "bbox": [x / w, y / h, bw / w, bh / h]})
    images = [{"file": im["file_name"], "detections": dets.get(im["id"], []) +
               [{"category": "1", "conf": 0.1, "bbox": [0.0, 0.0, 0.2, 0.2]}]}
              for im in data["images"]]
    md = path.parent / "md_results.json"
    md.write_text(json.dumps({"info": {"format_version": "1.4", "detector": "fabricated"},
                              "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
                              "images": images}))
    return path


def _value(name, world, root):
    v = NON_DEFAULT[name]
    return {"TARGET": str(world), "IMAGES": str(world.parent), "RUNS": str(root),
            "DETECTIONS": str(world.parent / "md_results.json")}.get(v, v) \
        if isinstance(v, str) else v


def _text(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def test_every_field_has_a_non_default_value_here():
    names = [f.name for f in fields(RunSpec)]
    assert sorted(NON_DEFAULT) == sorted(names)
    for f in fields(RunSpec):
        if f.default is not MISSING:
            assert NON_DEFAULT[f.name] != f.default, f.name
    assert {f.name for f in fields(RunSpec) if not f.metadata["identity"]} == OUTSIDE_IDENTITY


@pytest.mark.parametrize("name", [f.name for f in fields(RunSpec) if f.name not in ("backbone", "target")])
def test_each_field_survives_argparse_and_the_papermill_round_trip(name, tmp_path, world):
    value = _value(name, world, tmp_path)
    base = ["--profile", "tiny", _flag(name), _text(value)]
    for other in NEEDS.get(name, []):
        base += [_flag(other), _text(_value(other, world, tmp_path))]
    parser = cli.build_parser()
    args = parser.parse_args(["finetune", "--backbone", "supervised", "--target", str(world), *base])
    spec, = specs_from_args(args)
    got = getattr(spec, name)
    want = get_profile(value) if name == "profile" else value
    assert (str(got) if name == "runs_root" else got) == want
    # the run notebook's parameter: JSON-safe, and back to the same spec
    params = json.loads(json.dumps(spec.to_params()))
    assert RunSpec.from_params(params) == spec and params[name] == value
    # the grid's and the launcher's parsers make the same spec
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p, many=True)
    assert specs_from_args(p.parse_args(["--backbones", "supervised", "--targets", str(world),
                                         *base])) == [spec]
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert specs_from_args(p.parse_args(["--backbone", "supervised", "--target", str(world),
                                         *base])) == [spec]


def test_data_options_belong_to_targets_given_by_path(world):
    for name in ("images", "classes", "min_images", "split", "multi_label"):
        with pytest.raises(ValueError, match=rf"^{name}=.* is not allowed; {name} must be .* for "
                                             "the named target 'syn_serengeti': it applies to a "
                                             "target given by path"):
            RunSpec(**BASE, **{name: _value(name, world, "x")})
    spec = RunSpec("supervised", str(world), "tiny", min_images=6)
    assert spec.protocol()["strip"] == 0.0  # no strip is cut from a user's frames unless asked
    assert spec.run_dir().parent.parent.name.startswith("serengeti-")  # a short safe name
    assert spec.replace(min_images=7).identity != spec.identity
    assert RunSpec("supervised", str(world), "tiny", strip=40).strip == 40  # rows, for a path
    with pytest.raises(ValueError, match="strip=40 is not allowed"):
        RunSpec(**BASE, strip=40)


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
def _expected(root, world) -> RunSpec:
    return RunSpec(**{k: _value(k, world, root) for k in NON_DEFAULT})


def _argv(spec: RunSpec, many: bool = False) -> list[str]:
    out = []
    for k, v in spec.to_params().items():
        flag = _flag(k) + ("s" if many and k in ("backbone", "target") else "")
        out += [flag, _text(v)]
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
    data = params["data"]  # the target by path, read with every data option, in the box view
    assert data["view"] == "box" and data["margin"] == spec.box_margin
    assert data["boxes"]["threshold"] == spec.detection_threshold
    assert data["boxes"]["megadetector"] == spec.detections and len(data["boxes"]["sha256"]) == 64
    assert data["split"] == "sequence" and data["strip_fraction"] == 0.1
    assert data["selection"]["multi_label"] == "per_category"
    assert data["selection"]["classes"] == spec.classes and "human" not in params["classes"]
    assert len(data["selection"]["dropped_by_min_images"]) > 0


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
def test_finetune_cli_and_launcher_carry_every_field(tmp_path, lock_timeouts, capsys, world):
    spec = _expected(tmp_path / "cli", world)
    assert cli.main(["finetune", *_argv(spec)]) == 0
    rd = spec.run_dir()
    _check_arrived(spec, rd)
    assert lock_timeouts == [spec.lock_timeout]
    spec = _expected(tmp_path / "launch", world)
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
def test_grid_cli_and_run_grid_carry_every_field_into_the_notebook(tmp_path, world):
    spec = _expected(tmp_path / "grid-cli", world)
    assert cli.main(["grid", "--quiet", *_argv(spec, many=True)]) == 0
    _check_arrived(spec, spec.run_dir())
    assert _notebook_spec(spec.run_dir()) == spec.to_params()  # all fields, lock_timeout too
    spec = _expected(tmp_path / "run-grid", world)
    fields_ = {k: v for k, v in spec.to_params().items() if k not in ("backbone", "target", "seed")}
    df = grid.run_grid([spec.backbone], [spec.target], seeds=[spec.seed], progress=False, **fields_)
    assert df.run_dir.tolist() == [str(spec.run_dir())] and df.pretrain_seed.tolist() == [1]
    _check_arrived(spec, spec.run_dir())
    assert _notebook_spec(spec.run_dir()) == spec.to_params()


@pytest.mark.slow  # one study notebook
def test_a_study_notebook_passes_the_fields_it_does_not_vary_through(tmp_path, world):
    from camtrap_ssl.studies.params import execute_study

    spec = _expected(tmp_path / "runs", world)
    others = {k: v for k, v in spec.to_params().items()
              if k not in ("backbone", "target", "profile", "seed", "epochs", "runs_root",
                           "convergence_tolerance")}
    execute_study(1, tmp_path / "book", progress=False, profile="tiny", seeds=[spec.seed],
                  epochs=spec.epochs, runs_root=str(spec.root), backbones=[spec.backbone],
                  targets=[spec.target], convergence_tolerance=spec.convergence_tolerance,
                  seeded_pretraining=[],  # the run options name the pretraining seed themselves
                  run_options=others)
    _check_arrived(spec, spec.run_dir())
