"""Targets by path: kinds, identity and keys, option checks, class folders with odd image modes,
the embedded world as COCO Camera Traps and as Camtrap DP, and the real Serengeti samples."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from camtrap_ssl.data import camtrapdp_write, user
from camtrap_ssl.data.synthetic import write_camtrap_world


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))


def odd_folder(root):
    """Two classes, each with L, P, RGBA, CMYK JPEG and 16-bit PNG images."""
    rng = np.random.default_rng(0)
    for cls in ("fox", "hare"):
        d = root / cls
        d.mkdir(parents=True)
        rgb = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        rgb.convert("L").save(d / "grey.png")
        rgb.convert("P").save(d / "palette.png")
        rgba = rgb.convert("RGBA")
        rgba.putalpha(0)  # fully transparent: composited on white
        rgba.save(d / "alpha.png")
        rgb.convert("CMYK").save(d / "cmyk.jpg")
        Image.fromarray(np.tile(np.linspace(0, 4000, 24), (20, 1)).astype(np.uint16)).save(d / "deep.png")
    return root


def test_kinds_and_is_target_path(tmp_path):
    folder = odd_folder(tmp_path / "cams")
    assert user.target_kind(folder) == "imagefolder" and user.is_target_path(str(folder))
    (tmp_path / "x.json").write_text('{"images": []}')
    assert user.target_kind(tmp_path / "x.json") == "cct"
    (tmp_path / "empty").mkdir()
    assert not user.is_target_path(tmp_path / "empty") and not user.is_target_path("serengeti")
    assert not user.is_target_path(None)
    with pytest.raises(ValueError, match="empty folder"):
        user.load_user_target(tmp_path / "empty", size=8)


def test_identity_tracks_data_and_options(tmp_path):
    folder = odd_folder(tmp_path / "cams")
    a = user.user_target_identity(folder, {"split": "frame"})
    assert a["kind"] == "imagefolder" and a["classes"] == ["fox", "hare"]
    assert a["options"]["split"] == "frame" and a["options"]["strip"] == 0
    assert user.user_target_identity(folder, {"split": "frame", "min_images": 2}) != a
    (folder / "fox" / "grey.png").write_bytes((folder / "fox" / "grey.png").read_bytes() + b"x")
    assert user.user_target_identity(folder, {"split": "frame"})["sha256"] != a["sha256"]
    key = user.target_key(folder)
    assert key.startswith("cams-") and len(key) == len("cams-") + 6


@pytest.mark.parametrize("options, names", [
    ({"split": "random"}, ["split='random'", "'sequence'"]),
    ({"multi_label": "all"}, ["multi_label='all'", "'per_category'"]),
    ({"strip": 0.7}, ["strip=0.7", "number of rows"]),
    ({"strip": True}, ["strip=True"]),
    ({"min_images": 0}, ["min_images=0", "int >= 1"]),
    ({"classes": "fox"}, ["classes='fox'", "mapping"]),
    ({"classes": {"fox": 3}}, ["classes=", "None to drop"]),
    ({"images": "/no/such/dir"}, ["images='/no/such/dir'", "allowed"]),
    ({"val_fraction": 1.0}, ["val_fraction=1.0", "strictly between"]),
    ({"colour": 1}, ["unknown key", "colour"]),
])
def test_options_are_checked_where_they_enter(tmp_path, options, names):
    with pytest.raises(ValueError) as e:
        user.check_options(options)
    for n in names:
        assert n in str(e.value), (n, str(e.value))


def test_class_folders_with_odd_modes(tmp_path):
    folder = odd_folder(tmp_path / "cams")
    with pytest.raises(ValueError, match="split='frame'"):
        user.load_user_target(folder, size=8, progress=False)  # no sequences: nothing honest
    t = user.load_user_target(folder, size=8, split="frame", val_fraction=0.4, progress=False)
    assert t.classes == ["fox", "hare"] and t.identity["split"] == "frame"
    assert len(t.train) + len(t.val) == 10 and not t.identity["bad_files"]
    rows = {i: k for k, i in enumerate(t.train.image_ids)}
    side = t.train
    if "fox/deep.png" not in rows:
        side, rows = t.val, {i: k for k, i in enumerate(t.val.image_ids)}
    deep = side[rows["fox/deep.png"]][0]
    assert 0.3 < float(deep.mean()) < 0.7  # a 16-bit ramp scaled, not clipped to white
    ids = list(t.train.image_ids) + list(t.val.image_ids)
    alpha = (t.train if "fox/alpha.png" in t.train.image_ids else t.val)
    x = alpha[list(alpha.image_ids).index("fox/alpha.png")][0]
    assert float(x.min()) > 0.99  # transparent pixels composited on white
    assert sorted(ids) == sorted(f"{c}/{n}" for c in ("fox", "hare")
                                 for n in ("grey.png", "palette.png", "alpha.png", "cmyk.jpg", "deep.png"))
    # no sequences, no sites: the attributes say so (None), never one made-up sequence of all
    assert t.val.sequence_ids is None and t.val.locations is None
    assert list(t.val.ids) == [str(i) for i in t.val.image_ids]


def test_strip_rows_and_class_merge(tmp_path):
    folder = odd_folder(tmp_path / "cams")
    t = user.load_user_target(folder, size=8, split="frame", strip=5, progress=False,
                              classes={"fox": "mammal", "hare": "mammal2"})
    assert t.identity["strip"] == "bottom 5 of 20 rows" and t.identity["strip_fraction"] == 0.25
    assert t.classes == ["mammal", "mammal2"]
    with pytest.raises(ValueError, match="'wolf' is not a class"):
        user.load_user_target(folder, size=8, split="frame", classes=["wolf", "fox"])


def test_cct_unknown_image_id_is_refused(tmp_path):
    (tmp_path / "cams.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 0, "name": "fox"}],
        "annotations": [{"id": 5, "image_id": 99, "category_id": 0}]}))
    with pytest.raises(ValueError, match=r"cams.json: annotation id=5 refers to image_id=99"):
        user.load_user_target(tmp_path / "cams.json", size=8)


def test_few_locations_fall_back_to_sequence_with_a_warning(tmp_path):
    json_path = write_camtrap_world("serengeti", tmp_path / "w", "tiny", seed=0)
    data = json.loads(json_path.read_text())
    sites = sorted({im["location"] for im in data["images"]})
    for im in data["images"]:
        im["location"] = "siteA" if sites.index(im["location"]) % 2 else "siteB"
    (tmp_path / "w" / "two_sites.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="2 locations, fewer than 5"):
        t = user.load_user_target(tmp_path / "w" / "two_sites.json", size=8, min_images=4,
                                  progress=False)
    assert t.identity["split"] == "sequence"
    assert not set(t.train.sequence_ids) & set(t.val.sequence_ids)


def _by_id(t, rename=lambda c: c):
    out = {}
    for ds in (t.train, t.val):
        for k, i in enumerate(ds.image_ids):
            out.setdefault(str(i), set()).add((rename(t.classes[int(ds.labels[k])]),
                                               ds[k][0].numpy().tobytes()))
    return out


def test_embedded_world_as_camtrapdp_loads_the_same_images_and_labels(tmp_path):
    json_path = write_camtrap_world("serengeti", tmp_path / "w", "tiny", seed=0)
    camtrapdp_write.cct_to_camtrapdp(json_path, tmp_path / "pkg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = user.load_user_target(json_path, size=16, min_images=4, progress=False)
        b = user.load_user_target(tmp_path / "pkg", size=16, min_images=4, progress=False)
    assert a.identity["kind"] == "cct" and b.identity["kind"] == "camtrapdp"
    assert [c if c != "empty" else "blank" for c in a.classes] == sorted(b.classes, key=lambda c: (
        [c if c != "empty" else "blank" for c in a.classes].index(c)))
    left = _by_id(a, lambda c: "blank" if c == "empty" else c)
    right = _by_id(b)
    assert len(left) > 20 and left == right
    # each image's sequence and site, as strings per row, for sequence scores and resampling
    images = {str(im["id"]): im for im in json.loads(json_path.read_text())["images"]}
    assert [images[i]["seq_id"] for i in a.val.ids] == list(a.val.sequence_ids)
    assert [images[i]["location"] for i in a.val.ids] == list(a.val.locations)
    assert len(set(b.val.sequence_ids)) > 1  # Camtrap DP events, not one sequence of all


def _samples_cct(folder, out):
    names, images, anns = {}, [], []
    for k, f in enumerate(sorted(folder.glob("*.JPG"))):
        parts = f.stem.split("___")
        species = parts[0] if len(parts) > 1 else "unidentified"
        site = parts[2] if len(parts) > 1 else f.stem.split("_")[1]
        cid = names.setdefault(species, len(names))
        images.append({"id": f.stem, "file_name": f.name, "location": site, "seq_id": f.stem})
        anns.append({"id": k, "image_id": f.stem, "category_id": cid})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": n} for n, i in names.items()]}
    out.write_text(json.dumps(data))
    return names


def test_real_serengeti_samples_as_cct_and_camtrapdp(tmp_path, serengeti_samples):
    json_path = tmp_path / "samples.json"
    names = _samples_cct(serengeti_samples, json_path)
    assert len(names) == 12  # 11 named species and the unnamed frames
    with pytest.raises(ValueError, match=r"'aardwolf' \(1 images in 1 location group\)"):
        user.load_user_target(json_path, images=serengeti_samples, size=16, split="location")
    merge = {n: "named" for n in names if n != "unidentified"}
    a = user.load_user_target(json_path, images=serengeti_samples, size=16, classes=merge,
                              progress=False)
    assert a.classes == ["named", "unidentified"] and a.identity["split"] == "location"
    labels = list(a.train.labels) + list(a.val.labels)
    assert labels.count(0) == 11 and labels.count(1) == 25 and not a.identity["bad_files"]
    pkg = tmp_path / "pkg"
    camtrapdp_write.cct_to_camtrapdp(json_path, pkg, image_root=serengeti_samples)
    b = user.load_user_target(pkg, size=16, classes=merge, progress=False)
    assert _by_id(a) == _by_id(b)
