"""The paper path rehearsed end to end (camtrap_ssl.studies.rehearsal), and its fabricated inputs.

The slow test is the rehearsal itself (12.5 minutes measured on two shared cores): every command of
book/reproduce.md's paper-scale walkthrough on fabricated data and checkpoints in the published
formats. The fast tests check the fabrications against the published formats they stand for.
"""
import csv
import json
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camtrap_ssl.core.loopback import serve_folder
from camtrap_ssl.data import fabricate as F
from camtrap_ssl.data.lila import CATALOGUE
from camtrap_ssl.data.strip import strip_rows


def test_published_serengeti_is_lila_shaped_full_size_with_strip_and_a_corrupt_frame(tmp_path):
    data = F.publish_lila(tmp_path, "serengeti", per_class=2, n_locations=2)
    entry = CATALOGUE["serengeti"]
    with zipfile.ZipFile(tmp_path / entry["metadata"]) as zf:
        assert json.loads(zf.read(entry["json_name"])) == data
    names = [im["file_name"] for im in data["images"]]
    assert names[0] == "S1/B00/B00_R1/S1_B00_R1_PICT0001.JPG"
    assert {im["season"] for im in data["images"]} == {"S1", "S9"}
    assert all(im["seq_num_frames"] == 2 and im["location"] for im in data["images"])
    multi = [i for i in {a["image_id"] for a in data["annotations"]}
             if sum(a["image_id"] == i for a in data["annotations"]) > 1]
    assert len(multi) == 2  # the two frames of the two-species sequence
    good = tmp_path / entry["image_base"] / names[2]
    with Image.open(good) as im:
        assert im.size == F.FRAME
        rgb = np.asarray(im.convert("RGB"))
    strip = rgb[-strip_rows(1536, 100 / 1536):]
    assert strip.mean() < 40 and strip.max() > 200  # a black band with white text
    assert rgb[: -strip.shape[0]].mean() > 40
    broken = [n for n in names if (tmp_path / entry["image_base"] / n).stat().st_size == 2000]
    assert len(broken) == 2 and broken[0] == names[(2 - 1) * (5 * 2 + 2)]  # last location, species 1
    ann = next(a for a in data["annotations"] if a["image_id"] == names[2][:-4])
    x, y, w, h = ann["bbox"]
    assert 0 <= x and x + w <= 2048 and y + h <= 1536 - 100


def test_ena24_has_no_locations_and_nacti_has_them(tmp_path):
    ena = F.publish_lila(tmp_path, "ena24", per_class=2, n_locations=1)
    nacti = F.publish_lila(tmp_path, "nacti", per_class=2, n_locations=2)
    assert not any("location" in im for im in ena["images"])
    assert (tmp_path / CATALOGUE["ena24"]["metadata"]).suffix == ".json"  # served unzipped
    assert len({im["location"] for im in nacti["images"]}) == 2


def test_gold_standard_has_dryad_columns_one_relabelled_event_and_an_impossible_one(tmp_path):
    data = F.publish_lila(tmp_path / "srv", "serengeti", per_class=4, n_locations=1)
    labels, events = F.write_gold_standard(tmp_path, data)
    rows = list(csv.DictReader(open(labels)))
    assert list(rows[0]) == ["CaptureEventID", "NumSpecies", "Species", "Count"]
    assert rows[-1]["Species"] == "impossible" and rows[0]["CaptureEventID"].startswith("ASG")
    seq_of = {r["CaptureEventID"]: r["seq_id"] for r in csv.DictReader(open(events))}
    volunteers = {}
    for im in data["images"]:
        volunteers.setdefault(im["seq_id"], set()).update(
            a["category_id"] for a in data["annotations"] if a["image_id"] == im["id"])
    names = {c["id"]: c["name"] for c in data["categories"]}
    disagree = [r for r in rows[:-1]
                if {names[c] for c in volunteers[seq_of[r["CaptureEventID"]]]} != {r["Species"]}]
    assert len(disagree) == 1


@pytest.mark.parametrize("name,n,files", [("cifar10", 10, 5), ("cifar100", 100, 1)])
def test_cifar_in_torchvision_layout(tmp_path, name, n, files):
    from camtrap_ssl.data.cifar import cifar_dataset
    F.write_cifar(tmp_path, name, per_batch=4)  # CIFAR-10: 5 training batches, CIFAR-100: one file
    ds = cifar_dataset(name, tmp_path, train=True, verify_md5=False)
    assert len(ds) == 4 * files and len(ds.classes) == n and ds[0][0].shape == (3, 32, 32)


def test_loopback_server_serves_ranges_and_nothing_outside_its_root(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "f.bin").write_bytes(b"0123456789")
    (tmp_path / "secret").write_text("no")
    with serve_folder(tmp_path / "root") as url:
        assert urllib.request.urlopen(url + "a/f.bin").read() == b"0123456789"
        req = urllib.request.Request(url + "a/f.bin", headers={"Range": "bytes=4-"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206 and r.read() == b"456789"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "../secret")


@pytest.mark.slow
def test_rehearsal_runs_the_paper_path_end_to_end(tmp_path):
    from camtrap_ssl.studies import rehearsal

    work = tmp_path / "rehearsal"
    record = rehearsal.rehearse(work, progress=False)
    check_rehearsal(work, record)


def check_rehearsal(work, record):
    """What a passed rehearsal left in ``work`` (also callable on a ``make rehearsal`` folder)."""
    from camtrap_ssl.studies import rehearsal

    assert {n for n, _ in rehearsal.commands(work, "http://x/")} == set(record["steps"])
    assert all(s["rc"] == 0 for s in record["steps"].values())
    # Serengeti: the subset download is what was loaded, scored on the experts' labels; the paper
    # profile's 256-px frames stored
    params = json.loads(next((work / "runs" / "paper" / "serengeti" / "supervised_r50").glob(
        "*/params.json")).read_text())
    data = params["data"]
    assert data["json"].endswith(".subset.json") and data["split"] == "gold_standard"
    assert data["val_labels"].startswith("experts") and data["gold_standard"]["relabelled_frames"] >= 0
    assert data["size"] == 256
    # the whole NACTI and ENA24 downloads hold truncated frames: listed, not fatal
    loaded = {line.split()[0]: line for line in Path(record["steps"]["targets"]["log"]).read_text()
              .splitlines() if line.split()[:1] and line.split()[0] in ("nacti", "ena24")}
    assert all("truncated" in loaded[n] for n in ("nacti", "ena24"))
    assert params["environment"]["rehearsal"]
    # torchrun: two gloo ranks trained the CIFAR-10 run
    assert list((work / "runs" / "paper" / "cifar10" / "supervised_r50").glob("*/summary.json"))
    # the study notebooks ran without an error cell and the book has their pages
    studies = work / "book" / "studies"
    for nb in ("study1_supervised", "study2_self_supervised", "study3_invariance",
               "study3_appendix", "study4_reasoning"):
        cells = json.loads((studies / f"{nb}.ipynb").read_text())["cells"]
        assert not [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert (work / "book" / "_build" / "html" / "studies" / f"{nb}.html").is_file()
    study4 = (studies / "study4_reasoning.ipynb").read_text()
    assert "has no animal masks" in study4  # real data: the mask cells say why they are skipped
    # Study 3 analysed the 224-px evaluation view of the pair Studies 1/2 trained (1 epoch)
    curves = next((work / "runs" / "paper" / "study3").glob("curves_serengeti_*.csv"))
    assert curves.stat().st_size > 0
    # ... and never trained the pair afresh at the profile's 25 epochs
    pair_runs = list((work / "runs" / "paper" / "serengeti").glob("*/*"))
    assert len(pair_runs) >= 2 and all("-e1-" in d.name for d in pair_runs), pair_runs


def test_every_step_runs_the_paper_profile_itself():
    """Only the budget is reduced: each step names the paper profile, none overrides a field of
    it; the exceptions are the embedded world's own pages: the gallery of the book's introduction,
    RQ1's controlled axes and the own-data page's comparison on the embedded world written as
    Camtrap DP, which exist only in the generated world."""
    from camtrap_ssl.studies import rehearsal
    for name, argv in rehearsal.commands(Path("/w"), "http://127.0.0.1:1/"):
        profiles = [argv[i + 1] for i, a in enumerate(argv) if a == "--profile"]
        profiles += [argv[i + 2] for i, a in enumerate(argv) if a == "-p" and argv[i + 1] == "profile"]
        if name in ("study worlds", "study rq1", "study compare"):
            assert profiles == ['"tiny"']
        elif name.startswith(("study", "grid", "torchrun")):
            assert profiles and set(profiles) <= {"paper", '"paper"'}, name
