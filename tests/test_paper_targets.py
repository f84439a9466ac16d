"""Paper targets from a fabricated LILA-layout folder and fabricated CIFAR files."""
import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from camtrap_ssl.data import paper as P
from camtrap_ssl.data import prepare as prep

SPECIES = {1: "empty", 2: "zebra", 3: "gazelleThomsons", 4: "wildebeest"}


def make_lila(folder, name="serengeti", n_locations=4, per_location=6):
    """``folder/<name>.json`` + JPEGs; one two-species image, some empty frames, Serengeti paths.

    Class = colour of the frame, so labels can be checked from pixels after resizing.
    """
    colours = {2: (250, 20, 20), 3: (20, 250, 20), 4: (20, 20, 250), 1: (128, 128, 128)}
    images, anns, k = [], [], 0
    for loc in range(n_locations):
        for j in range(per_location):
            season = "S1" if loc < 3 else "S9"  # S9 lies outside Norouzzadeh's seasons 1-6
            fname = f"{season}/L{loc}/L{loc}_R1/{season}_L{loc}_R1_PICT{j:04d}.JPG"
            cat = 1 if j == 0 else 2 + (j + loc) % 3
            arr = np.zeros((48, 64, 3), dtype=np.uint8) + np.array(colours[cat], dtype=np.uint8)
            path = folder / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path, quality=95)
            images.append({"id": f"img{k}", "file_name": fname, "width": 64, "height": 48,
                           "location": f"L{loc}", "seq_id": f"seq{loc}_{j // 2}",
                           "season": season})
            anns.append({"id": f"a{k}", "image_id": f"img{k}", "category_id": cat})
            if loc == 1 and j == 5:  # a second species on one frame: dropped by the filter
                anns.append({"id": f"b{k}", "image_id": f"img{k}", "category_id": 3 if cat != 3 else 4})
            k += 1
    cats = [{"id": c, "name": n} for c, n in SPECIES.items()]
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"info": {}, "images": images, "categories": cats, "annotations": anns}))
    return path, images


def fabricate_cifar10(root):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, 4).tolist()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, fh)


def load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mini set has 3 classes, not the study's 48
        return P.load_paper_target(*args, progress=False, **kwargs)


def test_serengeti_filter_split_by_location_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv(P.ENV, str(tmp_path))
    make_lila(tmp_path / "serengeti")
    t = load_quiet("serengeti", size=16, seed=0)
    assert t.name == "serengeti" and t.stands_in_for == "serengeti"
    assert t.classes == ["zebra", "gazelleThomsons", "wildebeest"]  # empty dropped
    # seasons 1-6 only (location 3 is S9), no empty frames, no two-species frame: 3 x 5 - 1
    assert len(t.train) + len(t.val) == 14
    ids = t.train.image_ids + t.val.image_ids
    assert "img19" not in ids and "img0" not in ids and "img11" not in ids
    locs = lambda ds: {int(i[3:]) // 6 for i in ds.image_ids}  # noqa: E731
    assert locs(t.train) and locs(t.val) and not locs(t.train) & locs(t.val)
    assert t.identity["split"] == "location" and t.identity["bad_files"] == []
    x, y = t.train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert int(x.mean((1, 2)).argmax()) == y  # the colour channel is the label
    manifests = list((tmp_path / "serengeti" / "prepared").rglob("manifest.json"))
    assert sorted(p.parent.name.split("-")[0] for p in manifests) == ["train", "val"]
    assert {p.parent.parent.name for p in manifests} == {"16px"}


def test_bad_files_are_listed_and_cache_is_reused(tmp_path, monkeypatch):
    path, images = make_lila(tmp_path / "serengeti")
    raw = (path.parent / images[3]["file_name"]).read_bytes()
    (path.parent / images[3]["file_name"]).write_bytes(raw[: len(raw) // 2])
    t = load_quiet("serengeti", data_root=tmp_path, size=16)
    assert len(t.identity["bad_files"]) == 1 and images[3]["file_name"].split("/")[-1] in t.identity["bad_files"][0]
    assert len(t.train) + len(t.val) == 13

    def boom(*a, **k):
        raise AssertionError("decoded again although the prepared cache was current")

    monkeypatch.setattr(prep, "decode_image", boom)
    again = load_quiet("serengeti", data_root=tmp_path, size=16)
    assert torch.equal(again.train[0][0], t.train[0][0]) and again.identity == t.identity


def test_gold_standard_file_makes_the_validation_set(tmp_path):
    make_lila(tmp_path / "serengeti")
    (tmp_path / "serengeti" / "gold_standard_ids.txt").write_text("seq0_1\nimg13\n")
    t = load_quiet("serengeti", data_root=tmp_path, size=8)
    assert sorted(t.val.image_ids) == ["img13", "img2", "img3"]
    assert t.identity["split"] == "gold_standard" and t.identity["val_fraction"] is None
    # a location split can still be asked for
    assert load_quiet("serengeti", data_root=tmp_path, size=8, split_by="location").identity["split"] == "location"


def test_nacti_sample_and_ena24_by_sequence_without_locations(tmp_path):
    path, _ = make_lila(tmp_path / "nacti", name="nacti")
    t = load_quiet("nacti", data_root=tmp_path, size=8, nacti_sample=10)
    assert len(t.train) + len(t.val) == 10 and "stratified" in t.identity["selection"]
    path, _ = make_lila(tmp_path / "ena24", name="ena24")
    data = json.loads(path.read_text())
    for im in data["images"]:
        del im["location"]
    path.write_text(json.dumps(data))
    e = load_quiet("ena24", data_root=tmp_path, size=8)
    assert e.identity["split"] == "sequence" and "empty" in e.classes
    with pytest.raises(FileNotFoundError, match="gold"):
        load_quiet("ena24", data_root=tmp_path, size=8, split_by="gold_standard")


def test_cifar_through_torchvision_layout(tmp_path):
    fabricate_cifar10(tmp_path)
    t = load_quiet("cifar10", data_root=tmp_path, size=24, verify_md5=False)
    assert len(t.train) == 20 and len(t.val) == 4 and t.classes[2] == "c2"
    assert t.train[0][0].shape == (3, 24, 24) and t.identity["split"] == "official train/test"


def test_missing_data_names_path_and_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv(P.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        P.load_paper_target("ena24")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "ena24" / "ena24.json") in msg
    assert "camtrap-ssl data download ena24 --dest" in msg
    with pytest.raises(FileNotFoundError, match="torchvision.datasets.CIFAR100"):
        P.check_available("cifar100")
    with pytest.raises(ValueError, match="allowed"):
        P.load_paper_target("imagenet")
    with pytest.raises(ValueError, match="split_by"):
        P.load_paper_target("serengeti", split_by="per_frame")


def test_study3_images_come_from_a_lila_format_dataset(tmp_path, monkeypatch):
    """Study 3's image source can be a real LILA-format dataset, not only the synthetic world."""
    from camtrap_ssl.studies import comparison

    monkeypatch.setenv(P.ENV, str(tmp_path))
    make_lila(tmp_path / "serengeti")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y, m = comparison.images_of_classes("serengeti", ["zebra", "wildebeest"], 2, "tiny")
    classes = ["zebra", "gazelleThomsons", "wildebeest"]
    assert x.shape[1:] == (3, 32, 32) and m is None
    assert [classes[int(c)] for c in y] == sorted([classes[int(c)] for c in y], key=["zebra", "wildebeest"].index)
    assert {classes[int(c)] for c in y} <= {"zebra", "wildebeest"} and len(y) >= 2
    assert all(int(img.mean((1, 2)).argmax()) == int(lbl) for img, lbl in zip(x, y))  # colour = label


def test_gold_standard_is_scored_with_the_experts_labels(tmp_path):
    """Fabricated expert labels that disagree with the volunteers' (whose label is the colour)."""
    make_lila(tmp_path / "serengeti")
    # seq0_1 = img2 (volunteers: wildebeest), img3 (zebra); seq1_2 = img10 (wildebeest), img11
    # (two species: left out by the selection); seq2_1 = img14, img15: the experts could not tell
    (tmp_path / "serengeti" / "gold_standard_data.csv").write_text(
        "CaptureEventID,NumSpecies,Species,Count\n"
        "seq0_1,1,zebra,2\nseq1_2,1,wildebeest,1\nseq2_1,1,impossible,1\n")
    t = load_quiet("serengeti", data_root=tmp_path, size=8)
    assert t.identity["split"] == "gold_standard"
    assert t.identity["val_labels"].startswith("experts")
    rep = t.identity["gold_standard"]
    assert (rep["scored_events"], rep["impossible"], rep["events"]) == (2, 1, 3)
    assert sorted(t.val.image_ids) == ["img10", "img2", "img3"]
    label = dict(zip(t.val.image_ids, (t.classes[k] for k in t.val.labels)))
    assert label == {"img2": "zebra", "img3": "zebra", "img10": "wildebeest"}
    # the colours (the volunteers' labels) disagree where the experts relabelled
    colour = {i: t.classes[int(t.val[k][0].mean((1, 2)).argmax())] for k, i in enumerate(t.val.image_ids)}
    assert colour == {"img2": "wildebeest", "img3": "zebra", "img10": "wildebeest"}
    assert rep["relabelled_frames"] == 1
    impossible = {"img14", "img15"}  # seq2_1
    assert not impossible & set(t.train.image_ids) and not impossible & set(t.val.image_ids)


def test_no_location_and_no_sequence_is_refused_unless_a_frame_split_is_asked(tmp_path):
    path, _ = make_lila(tmp_path / "ena24", name="ena24")
    data = json.loads(path.read_text())
    for im in data["images"]:
        del im["location"], im["seq_id"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="split_by='frame'"):
        load_quiet("ena24", data_root=tmp_path, size=8)
    t = load_quiet("ena24", data_root=tmp_path, size=8, split_by="frame")
    assert t.identity["split"] == "frame" and len(t.train) + len(t.val) == 23  # 24, one two-species


def test_the_strip_cut_is_recorded_and_changes_the_prepared_cache(tmp_path):
    make_lila(tmp_path / "serengeti")
    t = load_quiet("serengeti", data_root=tmp_path, size=8)
    assert t.identity["strip_fraction"] == 100 / 1536 and "bottom 100 of 1536" in t.identity["strip"]
    kept = load_quiet("serengeti", data_root=tmp_path, size=8, strip_fraction=0.0)
    assert kept.identity["strip_fraction"] == 0.0
    manifests = list((tmp_path / "serengeti" / "prepared").rglob("manifest.json"))
    assert len(manifests) == 4  # two sides, each with and without the cut
    with pytest.raises(ValueError, match="strip_fraction"):
        load_quiet("serengeti", data_root=tmp_path, size=8, strip_fraction=0.7)


def test_a_subset_download_is_loaded_not_the_whole_file_beside_it(tmp_path):
    """`data download --per-class` leaves LILA's whole JSON (its images never fetched) beside the
    subset file: the subset is what must be loaded, else every frame is a missing file."""
    path, images = make_lila(tmp_path / "serengeti")
    data = json.loads(path.read_text())
    lila = tmp_path / "serengeti" / P.CATALOGUE["serengeti"]["json_name"]
    whole = {**data, "images": data["images"] + [{**images[1], "id": "ghost", "file_name": "S1/x/never.JPG"}],
             "annotations": data["annotations"] + [{"id": "g", "image_id": "ghost", "category_id": 2}]}
    lila.write_text(json.dumps(whole))
    path.rename(lila.with_name(lila.stem + ".subset.json"))
    assert P.find_json("serengeti", tmp_path).name.endswith(".subset.json")
    t = load_quiet("serengeti", data_root=tmp_path, size=8)
    assert t.identity["bad_files"] == [] and "ghost" not in t.train.image_ids + t.val.image_ids


def test_studies_3_4_see_a_real_dataset_as_the_models_do_the_224_centre_of_256(tmp_path, monkeypatch):
    """The paper profile stores 256 x 256 frames and evaluates their centre 224 crop; Study 3's
    pixel translations are of a 224-px input, so its images must be that crop. Real datasets have
    no animal masks: none are made up."""
    from camtrap_ssl.studies import comparison
    monkeypatch.setenv(P.ENV, str(tmp_path))
    make_lila(tmp_path / "serengeti")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y, masks, classes = comparison.animal_images("serengeti", 4, "paper")
        xc, yc, _ = comparison.images_of_classes("serengeti", ["zebra"], 2, "paper")
    assert x.shape[1:] == (3, 224, 224) and masks is None and len(set(y.tolist())) > 1
    assert xc.shape[1:] == (3, 224, 224) and (yc == classes.index("zebra")).all()
    # the label is the frame's colour, still readable in the crop
    assert (x.mean((2, 3)).argmax(1) == y).all()
