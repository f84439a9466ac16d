import copy
import json

import numpy as np
import pytest

from camtrap_ssl.data import megadetector as MD

try:  # the MegaDetector project's own validator (pip install megadetector-utils)
    from megadetector.postprocessing.validate_batch_results import validate_batch_results
except ImportError:  # pragma: no cover - the published rules are still checked by our reader
    validate_batch_results = None

needs_validator = pytest.mark.skipif(validate_batch_results is None,
                                     reason="megadetector-utils is not installed")


def md_errors(obj_or_path):
    """The validator's errors (it stops at the first one)."""
    src = str(obj_or_path) if not isinstance(obj_or_path, dict) else copy.deepcopy(obj_or_path)
    return validate_batch_results(src)["validation_results"]["errors"]


def detector_file():
    """A MegaDetector 1.4 results file as MDv5 writes one (no classifications)."""
    return {
        "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt",
                 "detection_completion_time": "2024-01-02 03:04:05",
                 "detector_metadata": {"megadetector_version": "v5a.0.0",
                                       "typical_detection_threshold": 0.2,
                                       "conservative_detection_threshold": 0.05}},
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "images": [
            {"file": "cam1/a.jpg", "detections": [
                {"category": "1", "conf": 0.15, "bbox": [0.5, 0.5, 0.2, 0.2]},
                {"category": "1", "conf": 0.93, "bbox": [0.1, 0.2, 0.3, 0.4]}]},
            {"file": "cam1/b.jpg", "detections": [
                {"category": "1", "conf": 0.05, "bbox": [0.0, 0.0, 0.1, 0.1]}]},
            {"file": "cam2/c.jpg", "detections": [
                {"category": "2", "conf": 0.8, "bbox": [0.6, 0.1, 0.3, 0.8]}], "failure": None},
            {"file": "cam2/d.jpg", "failure": "Failure image access", "detections": None},
        ],
    }


# --------------------------------------------------------------------------------------- reading

def test_read_keeps_boxes_at_or_above_the_threshold():
    out = MD.read_batch_output(detector_file())
    assert out.format_version == "1.4" and out.threshold == 0.2  # the file's typical threshold
    a, b, c, d = out.images
    assert [x.conf for x in a.detections] == [0.93] and a.detections[0].bbox == (0.1, 0.2, 0.3, 0.4)
    assert a.detections[0].category == "animal" and not a.empty
    assert b.empty and b.detections == ()
    assert c.detections[0].category == "person"
    assert d.failure == "Failure image access" and not d.empty
    low = MD.read_batch_output(detector_file(), threshold=0.05).by_file()
    assert [x.conf for x in low["cam1/a.jpg"].detections] == [0.93, 0.15]  # most confident first
    assert not low["cam1/b.jpg"].empty  # 0.05 >= 0.05
    plain = detector_file()
    del plain["info"]["detector_metadata"]
    assert MD.read_batch_output(plain).threshold == MD.TYPICAL_DETECTION_THRESHOLD


def _planted(edit):
    d = detector_file()
    edit(d)
    return d


@pytest.mark.parametrize("edit, where", [
    (lambda d: d.pop("info"), "info"),
    (lambda d: d["info"].update(format_version="1.2"), "info.format_version"),
    (lambda d: d.pop("detection_categories"), "detection_categories"),
    (lambda d: d["detection_categories"].update({"x": "animal"}), "detection_categories['x']"),
    (lambda d: d["images"][0]["detections"][1].update(category="7"),
     "images[0] ('cam1/a.jpg').detections[1].category"),
    (lambda d: d["images"][1]["detections"][0].update(conf="0.5"),
     "images[1] ('cam1/b.jpg').detections[0].conf"),
    (lambda d: d["images"][0]["detections"][0].update(bbox=[0.1, 0.2, 0.3]),
     "images[0] ('cam1/a.jpg').detections[0].bbox"),
    (lambda d: d["images"][0]["detections"][0].update(bbox=[0.9, 0.2, 0.3, 0.1]),
     "images[0] ('cam1/a.jpg').detections[0].bbox"),
    (lambda d: d["images"][0]["detections"][0].pop("conf"), "images[0] ('cam1/a.jpg').detections[0]: no `conf`"),
    (lambda d: d["images"][3].update(detections=[]), "images[3] ('cam2/d.jpg').detections"),
    (lambda d: d["images"][1].pop("detections"), "images[1] ('cam1/b.jpg').detections"),
    (lambda d: d["images"][2].update(file=None), "images[2]"),
    (lambda d: d["images"][0]["detections"][1].update(classifications=[["0", 0.9]]),
     "images[0] ('cam1/a.jpg').detections[1].classifications[0]"),
])
def test_read_errors_name_the_image_and_the_field(edit, where):
    with pytest.raises(MD.MegaDetectorFormatError) as e:
        MD.read_batch_output(_planted(edit))
    assert str(e.value).startswith(where), str(e.value)


def test_read_errors_on_classifications_out_of_order(tmp_path):
    d = detector_file()
    d["classification_categories"] = {"0": "deer", "1": "fox"}
    d["images"][0]["detections"][1]["classifications"] = [["0", 0.2], ["1", 0.8]]
    with pytest.raises(MD.MegaDetectorFormatError, match="descending"):
        MD.read_batch_output(d)
    d["images"][0]["detections"][1]["classifications"] = [["1", 0.8], ["0", 0.2]]
    path = tmp_path / "md.json"
    path.write_text(json.dumps(d))
    det = MD.read_batch_output(path).images[0].detections[0]
    assert det.classifications == (("fox", 0.8), ("deer", 0.2))


# --------------------------------------------------------------------------------------- writing

NAMES = ["empty", "deer", "fox", "human", "vehicle"]


def test_write_whole_image_predictions(tmp_path):
    preds = [
        ("x/1.jpg", None, [0.05, 0.7, 0.2, 0.03, 0.02]),  # deer
        ("x/2.jpg", None, [0.9, 0.05, 0.03, 0.01, 0.01]),  # empty: no detection
        ("x/3.jpg", None, [0.1, 0.1, 0.1, 0.6, 0.1]),  # human -> person
        ("x/4.jpg", [0.2, 0.2, 0.5, 0.5], [0.0, 0.1, 0.1, 0.1, 0.7]),  # vehicle in a box
    ]
    out = MD.write_batch_output(tmp_path / "r.json", preds, NAMES, classifier="demo_simclr",
                                classifier_metadata={"typical_classification_threshold": 0.8},
                                completion_time="2025-01-01 00:00:00")
    assert json.loads((tmp_path / "r.json").read_text()) == out
    assert out["info"] == {"format_version": "1.5", "classifier": "demo_simclr",
                           "classification_completion_time": "2025-01-01 00:00:00",
                           "classifier_metadata": {"typical_classification_threshold": 0.8}}
    assert out["detection_categories"] == MD.DETECTION_CATEGORIES
    assert out["classification_categories"] == {"0": "empty", "1": "deer", "2": "fox", "3": "human",
                                                "4": "vehicle"}
    im = {x["file"]: x for x in out["images"]}
    (deer,) = im["x/1.jpg"]["detections"]
    assert deer["category"] == "1" and deer["bbox"] == [0.0, 0.0, 1.0, 1.0]
    assert deer["conf"] == pytest.approx(0.9)  # P(animal) = 1 - empty - human - vehicle
    assert deer["classifications"] == [["1", 0.7], ["2", 0.2], ["0", 0.05], ["3", 0.03], ["4", 0.02]]
    assert im["x/2.jpg"]["detections"] == []
    assert im["x/3.jpg"]["detections"][0]["category"] == "2"
    assert im["x/3.jpg"]["detections"][0]["conf"] == pytest.approx(0.6)
    assert im["x/4.jpg"]["detections"][0]["category"] == "3"
    assert im["x/4.jpg"]["detections"][0]["bbox"] == [0.2, 0.2, 0.5, 0.5]
    # read back: the whole-image deer box and its classifications
    back = MD.read_batch_output(tmp_path / "r.json", threshold=0.5).by_file()
    assert back["x/1.jpg"].detections[0].classifications[:2] == (("deer", 0.7), ("fox", 0.2))
    assert back["x/2.jpg"].empty
    top2 = MD.write_batch_output(tmp_path / "t.json", preds[:1], NAMES, top_k=2, detector_file="/m/md_v5a.0.0.pt")
    assert top2["images"][0]["detections"][0]["classifications"] == [["1", 0.7], ["2", 0.2]]
    assert top2["info"]["detector"] == "md_v5a.0.0.pt"


def test_write_rejects_bad_predictions(tmp_path):
    with pytest.raises(MD.MegaDetectorFormatError, match="3 probabilities for 5"):
        MD.write_batch_output(tmp_path / "r.json", [("a.jpg", None, [0.2, 0.3, 0.5])], NAMES)
    with pytest.raises(MD.MegaDetectorFormatError, match="sum to 1"):
        MD.write_batch_output(tmp_path / "r.json", [("a.jpg", None, [3, -1, 0, 0, 0])], NAMES)
    with pytest.raises(MD.MegaDetectorFormatError, match="box"):
        MD.write_batch_output(tmp_path / "r.json", [("a.jpg", [0.8, 0, 0.5, 0.5], [0, 1, 0, 0, 0])], NAMES)
    assert not (tmp_path / "r.json").exists()


def test_merge_adds_classifications_to_the_detectors_boxes(tmp_path):
    src = tmp_path / "md.json"
    src.write_text(json.dumps(detector_file()))
    boxes = MD.read_batch_output(src)
    a = boxes.by_file()["cam1/a.jpg"].detections[0]
    preds = [("cam1/a.jpg", a, [0.1, 0.2, 0.7, 0.0, 0.0]),  # fox on the detector's 0.93 box
             ("cam2/new.jpg", None, [0.0, 1.0, 0.0, 0.0, 0.0])]  # an image the detector never saw
    out = MD.write_batch_output(tmp_path / "merged.json", preds, NAMES, merge_into=src,
                                completion_time="t")
    assert out["info"]["detector"] == "md_v5a.0.0.pt" and out["info"]["format_version"] == "1.5"
    assert out["info"]["detector_metadata"]["typical_detection_threshold"] == 0.2
    im = {x["file"]: x for x in out["images"]}
    dets = im["cam1/a.jpg"]["detections"]
    assert len(dets) == 2 and dets[0]["conf"] == 0.93
    assert dets[0]["classifications"] == [["2", 0.7], ["1", 0.2], ["0", 0.1], ["3", 0.0], ["4", 0.0]]
    assert "classifications" not in dets[1]  # the 0.15 box was not classified
    assert im["cam2/d.jpg"]["failure"] == "Failure image access"
    assert im["cam2/new.jpg"]["detections"][0]["bbox"] == [0.0, 0.0, 1.0, 1.0]
    assert json.loads(src.read_text()) == detector_file()  # the detector's file is untouched
    with pytest.raises(MD.MegaDetectorFormatError, match="failed in the detector"):
        MD.write_batch_output(tmp_path / "m2.json", [("cam2/d.jpg", None, [0, 1, 0, 0, 0])], NAMES,
                              merge_into=src)
    with pytest.raises(MD.MegaDetectorFormatError, match="one classifier at a time"):
        MD.write_batch_output(tmp_path / "m3.json", preds, NAMES, merge_into=out)


# ---------------------------------------------------------------- the MegaDetector project's validator

@needs_validator
def test_written_files_pass_the_megadetector_validator(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(NAMES)) * 0.3, size=12)
    preds = [(f"cam{i % 3}/img{i}.jpg", None if i % 2 else [0.1, 0.1, 0.4, 0.3], p)
             for i, p in enumerate(probs)]
    MD.write_batch_output(tmp_path / "r.json", preds, NAMES, completion_time="t")
    written = json.loads((tmp_path / "r.json").read_text())
    assert sum(len(im["detections"]) for im in written["images"]) >= 6  # not vacuous
    assert md_errors(tmp_path / "r.json") == []
    src = tmp_path / "md.json"
    src.write_text(json.dumps(detector_file()))
    assert md_errors(src) == []
    a = MD.read_batch_output(src).by_file()["cam1/a.jpg"].detections[0]
    MD.write_batch_output(tmp_path / "m.json", [("cam1/a.jpg", a, probs[0])], NAMES, merge_into=src)
    assert md_errors(tmp_path / "m.json") == []


@needs_validator
def test_planted_errors_fail_the_megadetector_validator_and_our_reader(tmp_path):
    good = MD.write_batch_output(tmp_path / "r.json", [("a.jpg", None, [0.1, 0.6, 0.1, 0.1, 0.1])],
                                 NAMES)
    assert md_errors(good) == []
    plants = {
        "unknown class id": lambda d: d["images"][0]["detections"][0]["classifications"][0].__setitem__(0, "99"),
        "conf as a string": lambda d: d["images"][0]["detections"][0].__setitem__("conf", "0.9"),
        "unmapped category": lambda d: d["images"][0]["detections"][0].__setitem__("category", "9"),
        "no format version": lambda d: d["info"].pop("format_version"),
        "detections not a list": lambda d: d["images"][0].__setitem__("detections", None),
    }
    for what, plant in plants.items():
        bad = copy.deepcopy(good)
        plant(bad)
        assert md_errors(bad), what
        with pytest.raises(MD.MegaDetectorFormatError):
            MD.read_batch_output(bad)
