"""camtrap-ssl predict (experiments.predict): a finished run's classifier on users' images, written
as MegaDetector batch output and Camtrap DP observations, preprocessed as the run's evaluation."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from camtrap_ssl.data import camtrapdp, camtrapdp_write, megadetector, synthetic
from camtrap_ssl.experiments import predict as PR
from camtrap_ssl.experiments.backbones import create_backbone
from camtrap_ssl.train import rundir

try:
    from megadetector.postprocessing.validate_batch_results import validate_batch_results
except ImportError:  # pragma: no cover
    validate_batch_results = None


def md_valid(path):
    if validate_batch_results is not None:
        res = validate_batch_results(str(path))["validation_results"]
        assert res["errors"] == [], res["errors"]
    return megadetector.read_batch_output(path, threshold=0.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from camtrap_ssl.experiments.finetuning import finetune_run
    from camtrap_ssl.experiments.spec import RunSpec
    root = tmp_path_factory.mktemp("runs")
    summary, rd = finetune_run(RunSpec("supervised", "syn_serengeti", "tiny", epochs=1,
                                       runs_root=root), progress=False)
    return rd


@pytest.fixture(scope="module")
def world():
    return synthetic.camtrap_world("serengeti", "tiny")


@pytest.mark.slow
def test_own_validation_images_reproduce_the_recorded_top1(tiny_run, world):
    run = rundir.finished_run(tiny_run)
    rec, summary = run.predictions(), run.summary()
    prep = PR.run_preprocessing(run.params())
    assert prep["view"] == "frame" and prep["strip"] > 0 and prep["stored_size"] == 32
    cct = __import__("camtrap_ssl.data.cct", fromlist=["x"])
    index = cct.load_cct(world)
    # the profile's extra validation frames live in a world of their own (identity's "json")
    extra = cct.load_cct(run.params()["data"]["extra_validation"]["json"])
    path_of = lambda i: (index if i in index.images else extra).path_of(i)  # noqa: E731
    model = create_backbone(tiny_run)
    x = torch.cat([PR.load_inputs(path_of(i), None, prep) for i in rec["ids"]])
    p = PR.classify(model, x, prep, "cpu")
    assert (p.argmax(1) == rec["probs"].astype(np.float64).argmax(1)).all()
    top1 = 100 * (p.argmax(1) == rec["labels"]).mean()
    assert top1 == pytest.approx(summary["final_top1"], abs=1e-9)
    np.testing.assert_allclose(p, rec["probs"].astype(np.float64), atol=2e-3)  # float16 on file


@pytest.mark.slow
def test_predict_on_coco_ct_writes_a_valid_megadetector_file(tiny_run, world, tmp_path):
    report = PR.predict(tiny_run, world, tmp_path / "out", progress=False)
    out = md_valid(tmp_path / "out" / PR.MD_FILE)
    n_images = len(json.loads(world.read_text())["images"])
    assert len(out.images) <= n_images and report["counts"]["predictions"] == n_images
    raw = json.loads((tmp_path / "out" / PR.MD_FILE).read_text())
    assert raw["info"]["format_version"] == "1.5"
    classes = rundir.finished_run(tiny_run).params()["classes"]
    cats = raw["classification_categories"]
    assert [cats[str(k)] for k in range(len(cats))] == classes
    dets = [d for im in raw["images"] for d in im["detections"]]
    assert dets and all(d["bbox"] == [0, 0, 1, 1] for d in dets)  # whole frames, no detector
    assert all(len(d["classifications"]) == len(classes) for d in dets)
    with_empty = [im for im in raw["images"] if not im["detections"]]  # predicted empty
    assert len(with_empty) + len(dets) == n_images
    assert report["scientificName"] == "class names"
    with pytest.raises(ValueError, match="never overwrites"):
        PR.predict(tiny_run, world, tmp_path / "out", progress=False)


@pytest.mark.slow
def test_predict_on_camtrapdp_adds_machine_observations(tiny_run, world, tmp_path):
    pkg = camtrapdp_write.cct_to_camtrapdp(world, tmp_path / "dp")
    (tmp_path / "taxa.csv").write_text("class,scientificName\nzebra,Equus quagga\n")
    report = PR.predict(tiny_run, pkg, tmp_path / "out", taxa=tmp_path / "taxa.csv", progress=False)
    md_valid(tmp_path / "out" / PR.MD_FILE)
    copy = camtrapdp.read_camtrapdp(report["camtrapdp"])  # validated (frictionless)
    machine = [o for o in copy.observations if o.get("classificationMethod") == "machine"]
    assert len(machine) == report["observations_added"] == len(copy.media)
    assert all("camtrap_ssl run" in o["classifiedBy"] and "supervised" in o["classifiedBy"]
               for o in machine)
    assert all(0 <= float(o["classificationProbability"]) <= 1 for o in machine)
    names = {o.get("scientificName") for o in machine if o["observationType"] == "animal"}
    assert "zebra" not in names  # mapped by the table
    assert report["scientificName"].startswith("taxa table")
    src = camtrapdp.read_camtrapdp(pkg)
    assert len(src.observations) + len(machine) == len(copy.observations)  # source untouched


@pytest.mark.slow
def test_predict_on_a_folder_with_detections_merges_into_the_detector_file(tiny_run, tmp_path):
    folder = tmp_path / "jpegs" / "cam1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{k}.jpg")
    md = {"info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt"},
          "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
          "images": [{"file": "cam1/0.jpg", "detections": [
                          {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.3, 0.3]},
                          {"category": "2", "conf": 0.8, "bbox": [0.5, 0.5, 0.2, 0.4]}]},
                     {"file": "cam1/1.jpg", "detections": [
                          {"category": "1", "conf": 0.1, "bbox": [0.1, 0.1, 0.3, 0.3]}]},
                     {"file": "cam1/2.jpg", "detections": []}]}
    (tmp_path / "md.json").write_text(json.dumps(md))
    report = PR.predict(tiny_run, tmp_path / "jpegs", tmp_path / "out", detections=tmp_path / "md.json",
                        threshold=0.2, progress=False)
    out = md_valid(tmp_path / "out" / PR.MD_FILE).by_file()
    assert set(out) == {"cam1/0.jpg", "cam1/1.jpg", "cam1/2.jpg"}
    a = out["cam1/0.jpg"].detections
    boxes = {d.bbox: d for d in a}
    assert boxes[(0.1, 0.1, 0.3, 0.3)].classifications  # the animal box got the classification
    assert boxes[(0.1, 0.1, 0.3, 0.3)].conf == 0.9  # the detector's confidence kept
    assert not boxes[(0.5, 0.5, 0.2, 0.4)].classifications  # the person box is left alone
    assert report["kind"] == "folder" and report["detections"]["threshold"] == 0.2


@pytest.mark.slow
def test_refusals_before_the_model_loads(tiny_run, world, tmp_path, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(PR, "create_backbone", no_model)
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "params.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="not a finished"):
        PR.predict(unfinished, world, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PR.predict(tiny_run, tmp_path / "nowhere", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        PR.predict(tiny_run, tmp_path / "empty", tmp_path / "o")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable MegaDetector"):
        PR.predict(tiny_run, world, tmp_path / "o", detections=tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a readable MegaDetector"):
        PR.predict(tiny_run, world, tmp_path / "o", detections=tmp_path / "missing.json")
    (tmp_path / "taxa.csv").write_text("class,scientificName\nunicorn,Monoceros\n")
    with pytest.raises(ValueError, match="unicorn"):
        PR.predict(tiny_run, world, tmp_path / "o", taxa=tmp_path / "taxa.csv")


@pytest.mark.slow
def test_crop_view_run_needs_boxes(tiny_run, tmp_path, monkeypatch):
    import shutil
    run = tmp_path / "boxrun"
    shutil.copytree(tiny_run, run)
    params = json.loads((run / "params.json").read_text())
    params["spec"]["view"] = "box"
    (run / "params.json").write_text(json.dumps(params))
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 60)).save(folder / "a.jpg")
    monkeypatch.setattr(PR, "create_backbone", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    with pytest.raises(ValueError, match="crop view.*--detections"):
        PR.predict(run, folder, tmp_path / "o")


@pytest.mark.slow
def test_cli_predict(tiny_run, world, tmp_path, capsys):
    from camtrap_ssl.cli import main
    assert main(["predict", "--run", str(tiny_run), "--target", str(world), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 0
    assert "megadetector: " in capsys.readouterr().out
    md_valid(tmp_path / "o" / PR.MD_FILE)
    assert main(["predict", "--run", str(tmp_path), "--target", str(world), "--out",
                 str(tmp_path / "o2")]) == 2
    assert "not a finished fine-tuning run" in capsys.readouterr().err
    assert main(["predict", "--run", str(tiny_run), "--target", str(world), "--out",
                 str(tmp_path / "o3"), "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err


@pytest.mark.slow
def test_crop_view_run_classifies_each_annotated_box(tiny_run, world, tmp_path):
    import shutil
    run = tmp_path / "boxrun"
    shutil.copytree(tiny_run, run)
    params = json.loads((run / "params.json").read_text())
    params["spec"]["view"] = "box"
    (run / "params.json").write_text(json.dumps(params))
    report = PR.predict(run, world, tmp_path / "o", progress=False)
    raw = json.loads((tmp_path / "o" / PR.MD_FILE).read_text())
    md_valid(tmp_path / "o" / PR.MD_FILE)
    coco = json.loads(world.read_text())
    n_boxes = sum(1 for a in coco["annotations"] if a.get("bbox") and a["category_id"] != 0)
    assert report["counts"]["inputs"] == report["counts"]["predictions"] == n_boxes
    assert len(raw["images"]) == len(coco["images"])  # images without a box listed as empty
    # frames without a box have no detection (and a box predicted empty writes none either)
    assert 0 < report["counts"]["no_box"] <= sum(1 for im in raw["images"] if not im["detections"])
    dets = [d for im in raw["images"] for d in im["detections"]]
    assert dets and all(d["bbox"] != [0, 0, 1, 1] for d in dets)  # the annotated boxes
