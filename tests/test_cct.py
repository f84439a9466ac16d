"""COCO Camera Traps loader: validation, label table, leak-free splits, bad images, masks."""
import json
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from camtrap_ssl.data import cct, selection, splits

CATS = [{"id": 0, "name": "empty"}, {"id": 1, "name": "zebra"}, {"id": 7, "name": "guineafowl"},
        {"id": 3, "name": "lionMale"}, {"id": 4, "name": "ostrich"}]


def make_lila(root, n_locations=4, seqs_per_location=3, seed=0, write_images=True,
              size=(48, 36), season="S1"):
    """A small dataset in LILA's exact layout: JSON beside S<k>/<site>/<site>_R1/... JPEGs.

    Every sequence gets one label for all its frames (as in Serengeti); sequence 1 of each
    location shows two species, sequence 2 repeats one species in two boxes.
    """
    rng = random.Random(seed)
    images, annotations = [], []
    for loc in range(n_locations):
        site = f"B{loc:02d}"
        for s in range(seqs_per_location):
            seq_id = f"SER_{season}#{site}#1#{s}"
            n_frames = rng.randint(1, 3)
            cat = rng.choice([0, 1, 7, 3, 4])
            for fr in range(n_frames):
                iid = f"{season}/{site}/{site}_R1/{season}_{site}_R1_PICT{s:03d}{fr}"
                fname = iid + ".JPG"
                images.append({"id": iid, "file_name": fname, "width": size[0],
                               "height": size[1], "location": site, "seq_id": seq_id,
                               "seq_num_frames": n_frames, "frame_num": fr + 1,
                               "datetime": "2010-07-18 16:26:14", "season": season})
                cats = [cat]
                if s == 1 and cat != 0:
                    cats = [cat, 1 if cat != 1 else 4]
                if s == 2 and cat != 0:
                    cats = [cat, cat]
                for c in cats:
                    ann = {"id": f"a{len(annotations)}", "image_id": iid, "category_id": c,
                           "sequence_level_annotation": True}
                    if c != 0:
                        ann["bbox"] = [2.0, 3.0, 10.0, 8.0]
                    annotations.append(ann)
                if write_images:
                    p = root / fname
                    p.parent.mkdir(parents=True, exist_ok=True)
                    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
                    Image.new("RGB", size, colour).save(p, quality=95)
    # one image without any annotation
    images.append({"id": "unlabelled", "file_name": "S1/X/unlabelled.JPG", "location": "X",
                   "seq_id": "seqX", "frame_num": 1, "seq_num_frames": 1})
    data = {"info": {"version": "test", "description": "fabricated"}, "images": images,
            "categories": [dict(c) for c in CATS], "annotations": annotations}
    path = root / "fabricated.json"
    path.write_text(json.dumps(data))
    return path, data


def write_json(tmp_path, data, name="bad.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_load_label_table_policies(tmp_path):
    path, data = make_lila(tmp_path)
    idx = cct.load_cct(path)
    assert idx.image_root == tmp_path
    assert idx.n_unlabelled == 1
    anns = {}
    for a in data["annotations"]:
        anns.setdefault(a["image_id"], set()).add(a["category_id"])
    multi = {i for i, cs in anns.items() if len(cs) > 1}
    single = {i for i, cs in anns.items() if len(cs) == 1}
    assert multi and single
    assert set(idx.image_ids) == single
    assert idx.n_multi_dropped == len(multi)
    assert len(idx.samples) == len(single)  # repeated boxes of one species: one sample
    # classes in category-id order, only those with samples; labels are contiguous positions
    assert idx.category_ids == sorted(idx.category_ids)
    assert idx.class_names == [idx.categories[c] for c in idx.category_ids]
    assert sorted(set(idx.labels())) == list(range(idx.num_classes))

    per = cct.load_cct(path, multi_label="per_category")
    assert len(per.samples) == sum(len(cs) for cs in anns.values())
    assert set(per.image_ids) == set(anns)
    with pytest.raises(ValueError, match="multi_label"):
        cct.load_cct(path, multi_label="first")


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id="),
    (lambda d: d["annotations"].append({**d["annotations"][0]}), "duplicate annotation id="),
    (lambda d: d["annotations"][3].__setitem__("image_id", "ghost-image"), "ghost-image"),
    (lambda d: d["annotations"][3].__setitem__("category_id", 99), "category_id=99"),
    (lambda d: d["categories"].append({"id": 1, "name": "zebra2"}), "duplicate category id=1"),
    (lambda d: d.pop("categories"), "'categories'"),
    (lambda d: d["annotations"][2].pop("category_id"), "'category_id'"),
    (lambda d: d["images"][1].__setitem__("file_name", "../../etc/passwd"), "file_name"),
    (lambda d: d["annotations"][2].__setitem__("bbox", [1, 2]), "bbox"),
    (lambda d: d["images"][0].__setitem__("id", ["a", "b"]), "has id=['a', 'b']; ids are str or int"),
    (lambda d: d["annotations"][0].__setitem__("id", [1]), "has id=[1]; ids are str or int"),
    (lambda d: d["annotations"][0].__setitem__("image_id", [1]), "image_id=[1]; ids are"),
    (lambda d: d["images"][2].__setitem__("file_name", 17), "file_name=17; it must be a non-empty string"),
    (lambda d: d["categories"][1].__setitem__("name", None), "name=None; a category name must"),
    (lambda d: d.__setitem__("annotations", []), "'annotations' is empty"),
    (lambda d: _first_box(d).__setitem__("bbox", [40.0, 3.0, 10.0, 8.0]), "ends at 50, outside the image's width 48"),
    (lambda d: _first_box(d).__setitem__("bbox", [2.0, 30.0, 10.0, 8.0]), "outside the image's height 36"),
    (lambda d: _first_box(d).__setitem__("bbox", [-5.0, 3.0, 10.0, 8.0]), "negative position"),
    (lambda d: _first_box(d).__setitem__("bbox", [2.0, 3.0, -10.0, 8.0]), "width and height must be > 0"),
    (lambda d: _first_box(d).__setitem__("bbox", [2.0, float("nan"), 10.0, 8.0]), "not finite"),
    (lambda d: _first_box(d).__setitem__("bbox", ["2", "3", "10", "8"]), "not all numbers"),
])
def test_validation_errors_name_file_and_id(tmp_path, mutate, needle):
    _, data = make_lila(tmp_path, write_images=False)
    mutate(data)
    p = write_json(tmp_path, data)
    with pytest.raises(cct.CCTFormatError) as err:
        cct.load_cct(p)
    assert needle in str(err.value)
    assert str(p) in str(err.value)


def _first_box(data):
    return next(a for a in data["annotations"] if "bbox" in a)


def test_box_overhanging_by_rounding_is_accepted(tmp_path):
    _, data = make_lila(tmp_path, write_images=False)
    _first_box(data)["bbox"] = [38.5, 28.0, 10.4, 8.9]  # ends at 48.9 x 36.9 of 48 x 36
    assert len(cct.load_cct(write_json(tmp_path, data)))


def test_non_utf8_bytes_are_named_with_their_offset(tmp_path):
    _, data = make_lila(tmp_path, write_images=False)
    raw = json.dumps(data).replace('"zebra"', '"zebr\\u00e9"').encode()
    raw = raw.replace(b"zebr\\u00e9", b"zebr\xe9")  # Latin-1 e-acute, not UTF-8
    p = tmp_path / "latin1.json"
    p.write_bytes(raw)
    with pytest.raises(cct.CCTFormatError) as err:
        cct.load_cct(p)
    assert f"{p}: not UTF-8 text (byte 0xe9 at offset {raw.index(bytes([0xe9]))})" in str(err.value)


def test_no_usable_label_is_an_error_not_an_empty_index(tmp_path):
    _, data = make_lila(tmp_path, write_images=False)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]
    data["annotations"].append({"id": "x", "image_id": data["images"][0]["id"], "category_id": 4})
    data["annotations"].append({"id": "y", "image_id": data["images"][0]["id"], "category_id": 0})
    with pytest.raises(cct.CCTFormatError, match="no image has a usable label"):
        cct.load_cct(write_json(tmp_path, data))
    assert len(cct.load_cct(write_json(tmp_path, data), multi_label="per_category")) >= 2


def test_annotation_error_names_annotation_id(tmp_path):
    _, data = make_lila(tmp_path, write_images=False)
    data["annotations"][5]["image_id"] = "nope"
    with pytest.raises(cct.CCTFormatError, match=repr(data["annotations"][5]["id"])):
        cct.load_cct(write_json(tmp_path, data))


def test_splits_never_cross_sequences_or_locations(tmp_path):
    path, _ = make_lila(tmp_path, n_locations=9, seqs_per_location=7, seed=3, write_images=False)
    idx = cct.load_cct(path, multi_label="per_category")
    all_ids = set(idx.image_ids)
    for seed in range(25):
        for by in ("sequence", "location"):
            sp = splits.split(idx, by=by, val_fraction=0.3, seed=seed)
            tr, va = set(sp.train), set(sp.val)
            assert tr and va and not tr & va and tr | va == all_ids
            for key in ("seq_id",) + (("location",) if by == "location" else ()):
                assert not ({idx.images[i][key] for i in tr} & {idx.images[i][key] for i in va})
            # many small sequences: close to the target; nine locations: within ~half a group
            frac = sum(1 for i, _ in idx.samples if i in va) / len(idx.samples)
            assert abs(frac - 0.3) <= (0.03 if by == "sequence" else 0.08)
    a = splits.split(idx, by="location", val_fraction=0.3, seed=1)
    b = splits.split(idx, by="location", val_fraction=0.3, seed=1)
    c = splits.split(idx, by="location", val_fraction=0.3, seed=2)
    assert a.val == b.val and (a.val != c.val or a.train != c.train)
    with pytest.raises(ValueError, match="'frame' leaks bursts"):
        splits.split(idx, by="image")
    with pytest.raises(ValueError, match="val_fraction"):
        splits.split(idx, val_fraction=1.0)


def test_location_split_merges_a_sequence_spanning_locations(tmp_path):
    _, data = make_lila(tmp_path, n_locations=6, seqs_per_location=2, write_images=False)
    # one sequence whose frames claim two locations: both locations must land on one side
    seq = data["images"][0]["seq_id"]
    frames = [im for im in data["images"] if im["seq_id"] == seq]
    other = next(im for im in data["images"] if im["location"] != frames[0]["location"])
    other["seq_id"] = seq
    idx = cct.load_cct(write_json(tmp_path, data), multi_label="per_category")
    for s in range(20):
        sp = splits.split(idx, by="location", val_fraction=0.4, seed=s)
        side = {i: ("t" if i in set(sp.train) else "v") for i in sp.train + sp.val}
        locs = {frames[0]["location"], other["location"]}
        assert len({side[i] for i in side if idx.images[i]["location"] in locs}) == 1


def test_split_by_location_requires_locations(tmp_path):
    _, data = make_lila(tmp_path, write_images=False)
    del data["images"][0]["location"]
    idx = cct.load_cct(write_json(tmp_path, data), multi_label="per_category")
    with pytest.raises(ValueError, match=repr(data["images"][0]["id"])):
        splits.split(idx, by="location")


def test_gold_standard_split_takes_ids_and_excludes_their_sequences(tmp_path):
    path, _ = make_lila(tmp_path, n_locations=5, seqs_per_location=4, seed=1, write_images=False)
    idx = cct.load_cct(path, multi_label="per_category")
    multi_frame = [i for i in idx.image_ids if idx.images[i]["seq_num_frames"] > 1]
    gold = [multi_frame[0]]
    seq = idx.images[gold[0]]["seq_id"]
    ids_file = tmp_path / "gold.json"
    ids_file.write_text(json.dumps({"image_ids": gold}))
    sp = splits.gold_standard_split(idx, ids_file)
    assert sp.val == gold
    assert sp.excluded and all(idx.images[i]["seq_id"] == seq for i in sp.excluded)
    assert seq not in {idx.images[i]["seq_id"] for i in sp.train}
    # a sequence id brings all of its frames
    by_seq = splits.gold_standard_split(idx, [seq])
    assert set(by_seq.val) == {i for i in idx.image_ids if idx.images[i]["seq_id"] == seq}
    with pytest.raises(ValueError, match="none of the"):
        splits.gold_standard_split(idx, ["nothing-like-this"])


def test_filter_classes(tmp_path):
    path, _ = make_lila(tmp_path, n_locations=6, write_images=False)
    idx = cct.load_cct(path, multi_label="per_category")
    z = selection.filter_classes(idx, keep=["Zebra", "LIONMALE"])  # case-insensitive
    assert set(z.class_names) <= {"zebra", "lionMale"} and z.num_classes >= 1
    assert all(idx.categories[c] in ("zebra", "lionMale") for _, c in z.samples)
    assert sorted(set(z.labels())) == list(range(z.num_classes))
    d = selection.filter_classes(idx, drop=["empty"])
    assert "empty" not in d.class_names
    assert len(d.samples) == sum(1 for _, c in idx.samples if c != 0)
    with pytest.raises(ValueError, match="allowed"):
        selection.filter_classes(idx, keep=["unicorn"])


def test_serengeti_filter_rule(tmp_path):
    _, data = make_lila(tmp_path, n_locations=5, write_images=False)
    # a season-7 image of a zebra must go; its season comes from the path when no 'season' key
    data["images"].append({"id": "late", "file_name": "S7/B01/B01_R1/S7_B01_R1_PICT0001.JPG",
                           "location": "B01", "seq_id": "late"})
    data["annotations"].append({"id": "late-a", "image_id": "late", "category_id": 1})
    idx = cct.load_cct(write_json(tmp_path, data), multi_label="per_category")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ser = selection.serengeti_filter(idx)
    assert any("48" in str(x.message) for x in w)  # fabricated data has fewer classes
    kept = {i for i, _ in ser.samples}
    multi = {i for i, a in idx.annotations_by_image.items()
             if len({x["category_id"] for x in a}) > 1}
    assert "late" not in kept and not kept & multi
    assert "empty" not in ser.class_names
    assert kept == {i for i, c in idx.samples if i not in multi and c != 0 and i != "late"}
    every = selection.serengeti_filter(idx, seasons=None, expected_classes=None)
    assert "late" in {i for i, _ in every.samples}


def test_sample_keep_distribution_keeps_proportions(tmp_path):
    rng = random.Random(0)
    weights = {1: 0.6, 7: 0.25, 3: 0.1, 4: 0.05}
    images, anns = [], []
    for k in range(20000):
        c = rng.choices(list(weights), list(weights.values()))[0]
        images.append({"id": k, "file_name": f"img{k}.jpg"})
        anns.append({"id": k, "image_id": k, "category_id": c})
    p = write_json(tmp_path, {"images": images, "categories": [dict(c) for c in CATS],
                              "annotations": anns})
    idx = cct.load_cct(p)
    sub = selection.sample_keep_distribution(idx, n=1500, seed=4)
    assert len(sub.samples) == 1500
    full, part = idx.class_counts(), sub.class_counts()
    for name in full:
        assert abs(part[name] / 1500 - full[name] / len(idx.samples)) <= 1 / 1500 + 1e-9
    assert len({i for i, _ in sub.samples}) == 1500
    again = selection.sample_keep_distribution(idx, n=1500, seed=4)
    other = selection.sample_keep_distribution(idx, n=1500, seed=5)
    assert again.samples == sub.samples and other.samples != sub.samples
    assert selection.sample_keep_distribution(idx, n=10**6) is idx


def _break_files(root, idx):
    """Make one corrupt, one truncated, one empty and one missing image; return their ids."""
    ids = idx.image_ids
    corrupt, truncated, empty, missing = ids[0], ids[1], ids[2], ids[3]
    idx.path_of(corrupt).write_bytes(bytes(random.Random(1).randrange(256) for _ in range(900)))
    # a bigger, noisy JPEG truncated at 60 % (PIL's header still parses)
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(idx.path_of(truncated), quality=90)
    raw = idx.path_of(truncated).read_bytes()
    idx.path_of(truncated).write_bytes(raw[: int(len(raw) * 0.6)])
    idx.path_of(empty).write_bytes(b"")
    idx.path_of(missing).unlink()
    return {corrupt, truncated, empty, missing}


@pytest.mark.parametrize("load_truncated", [False, True])
def test_dataset_skips_and_lists_bad_images(tmp_path, load_truncated, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    path, _ = make_lila(tmp_path, n_locations=4, seqs_per_location=3)
    idx = cct.load_cct(path, multi_label="per_category")
    bad = _break_files(tmp_path, idx)
    ds = cct.CCTDataset(idx, idx.image_ids, size=16)
    assert {p for p, _ in ds.bad_files} == {str(idx.path_of(i)) for i in bad}
    assert len(ds) == sum(1 for i, _ in idx.samples if i not in bad)
    reasons = dict(ds.bad_files)
    assert any("truncated" in r for r in reasons.values())
    assert any(r == "missing" for r in reasons.values())
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    n, labels = 0, []
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
        assert 0.0 <= x.min() and x.max() <= 1.0
        n += len(y)
        labels.extend(y.tolist())
    assert n == len(ds) and labels == ds.labels.tolist()


def test_file_going_bad_after_scan_is_substituted_not_fatal(tmp_path):
    path, _ = make_lila(tmp_path, n_locations=3, seqs_per_location=2)
    idx = cct.load_cct(path, multi_label="per_category")
    ds = cct.CCTDataset(idx, None, size=8)
    assert ds.bad_files == []
    victim = ds.samples[0][0]
    idx.path_of(victim).unlink()
    with pytest.warns(UserWarning, match="skipping bad image"):
        x, y = ds[0]
    j = next(k for k, (i, _) in enumerate(ds.samples) if i != victim)
    assert y == ds.samples[j][1] and torch.equal(x, ds[j][0])
    assert [p for p, _ in ds.bad_files] == [str(idx.path_of(victim))]
    assert sum(1 for _ in ds) == len(ds)  # a full pass still completes


def test_squash_resize_keeps_whole_frame(tmp_path):
    """A wide frame, left half red, right half blue: both halves survive the resize."""
    img = np.zeros((30, 90, 3), dtype=np.uint8)
    img[:, :45] = (255, 0, 0)
    img[:, 45:] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / "wide.png")
    data = {"images": [{"id": 1, "file_name": "wide.png", "seq_id": "s"}],
            "categories": [dict(c) for c in CATS],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1}]}
    idx = cct.load_cct(write_json(tmp_path, data))
    x, y = cct.CCTDataset(idx, [1], size=20)[0]
    assert x.shape == (3, 20, 20) and y == 0
    assert x[0, :, :8].mean() > 0.95 and x[2, :, :8].mean() < 0.05
    assert x[2, :, -8:].mean() > 0.95 and x[0, :, -8:].mean() < 0.05


def test_masks_from_mask_file(tmp_path):
    Image.new("RGB", (40, 20), (90, 120, 60)).save(tmp_path / "a.jpg")
    Image.new("RGB", (40, 20), (10, 10, 10)).save(tmp_path / "e.jpg")
    m = np.zeros((20, 40), dtype=np.uint8)
    m[:, :10] = 255  # the animal fills the left quarter
    (tmp_path / "masks").mkdir()
    Image.fromarray(m).save(tmp_path / "masks" / "a.png")
    data = {"images": [{"id": "a", "file_name": "a.jpg", "seq_id": "1"},
                       {"id": "e", "file_name": "e.jpg", "seq_id": "2"}],
            "categories": [dict(c) for c in CATS],
            "annotations": [{"id": 1, "image_id": "a", "category_id": 1,
                             "bbox": [0, 0, 10, 20], "mask_file": "masks/a.png"},
                            {"id": 2, "image_id": "e", "category_id": 0}]}
    idx = cct.load_cct(write_json(tmp_path, data))
    ds = cct.CCTDataset(idx, None, size=16, return_mask=True)
    got = {idx.class_names[y]: mk for _, y, mk in (ds[k] for k in range(len(ds)))}
    assert got["zebra"].shape == (1, 16, 16)
    assert got["zebra"][0, :, :4].min() == 1 and got["zebra"][0, :, 4:].max() == 0
    assert got["empty"].sum() == 0
    # an animal annotation without a mask (the animal left the frame) gives a zero mask ...
    data["images"].append({"id": "left", "file_name": "e.jpg", "seq_id": "1"})
    data["annotations"].append({"id": 3, "image_id": "left", "category_id": 1})
    idx2 = cct.load_cct(write_json(tmp_path, data, "left.json"))
    ds2 = cct.CCTDataset(idx2, ["a", "left"], size=16, return_mask=True)
    _, y, mk = ds2[[i for i, _ in ds2.samples].index("left")]
    assert idx2.class_names[y] == "zebra" and mk.sum() == 0
    # ... but a selection without any mask (a real LILA file) is refused, not read as zeros
    with pytest.raises(ValueError, match="mask_file"):
        cct.CCTDataset(idx2, ["e", "left"], size=16, return_mask=True)


def test_real_serengeti_samples_decode_when_present(tmp_path):
    import pathlib
    folder = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
        "serengeti-samples"
    files = sorted(folder.glob("S*.JPG"))[:4] if folder.is_dir() else []
    if not files:
        pytest.skip("../shared/data/serengeti-samples absent")
    data = {"images": [{"id": f.stem, "file_name": f.name, "seq_id": f.stem} for f in files],
            "categories": [dict(c) for c in CATS],
            "annotations": [{"id": k, "image_id": f.stem, "category_id": 1}
                            for k, f in enumerate(files)]}
    idx = cct.load_cct(write_json(tmp_path, data), image_root=folder)
    ds = cct.CCTDataset(idx, None, size=32)
    assert ds.bad_files == [] and len(ds) == len(files)
    x, _ = ds[0]
    assert x.shape == (3, 32, 32) and x.std() > 0.01


def test_quick_check_accepts_padding_after_end_marker(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    p = tmp_path / "padded.jpg"
    Image.fromarray(noise).save(p, quality=90)
    raw = p.read_bytes()
    p.write_bytes(raw + b"\x00" * 1000)  # some cameras pad files after the JPEG end marker
    assert cct.check_image_file(p) is None
    p.write_bytes(raw[:-2])  # lose only the end marker
    assert "truncated" in cct.check_image_file(p)
