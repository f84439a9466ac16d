"""Tests of the embedded synthetic world (camtrap_ssl.data.synthetic)."""
import numpy as np
import pytest

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data.synthetic import (
    SIMILAR_CLASSES,
    SOURCE_CLASSES,
    default_cache_dir,
    similar_world,
    source_world,
)

SMALL = get_profile("tiny", source_per_class=2, source_val_per_class=1, similar_per_class=2,
                    similar_test_per_class=1)


def test_source_world_shapes_balance_and_masks(tmp_path):
    w = source_world(SMALL, cache_dir=tmp_path)
    p = SMALL
    n = len(SOURCE_CLASSES)
    assert len(w.classes) == n == 20
    assert w.images_train.shape == (n * p.source_per_class, p.input_size, p.input_size, 3)
    assert w.images_train.dtype == np.uint8 and w.labels_train.dtype == np.int64
    assert np.bincount(w.labels_train, minlength=n).tolist() == [p.source_per_class] * n
    assert np.bincount(w.labels_val, minlength=n).tolist() == [p.source_val_per_class] * n
    # objects are large and centred-ish: every mask holds a good share of the frame
    share = w.masks_train.reshape(len(w.masks_train), -1).mean(1)
    assert share.min() > 0.02 and np.median(share) > 0.1
    x, y = w.tensors("val")
    assert x.dtype.is_floating_point and tuple(x.shape[1:]) == (3, p.input_size, p.input_size)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and x.max() > 0.5
    assert y.tolist() == w.labels_val.tolist()
    with pytest.raises(ValueError, match="allowed"):
        w.tensors("test")


def test_source_world_deterministic_and_seeded(tmp_path):
    a = source_world(SMALL, seed=3, cache_dir=tmp_path / "a")
    b = source_world(SMALL, seed=3, cache_dir=tmp_path / "b")
    c = source_world(SMALL, seed=4, cache_dir=tmp_path / "c")
    assert np.array_equal(a.images_train, b.images_train)
    assert np.array_equal(a.masks_val, b.masks_val)
    assert not np.array_equal(a.images_train, c.images_train)


def test_masks_cover_drawn_pixels(tmp_path):
    """Pixels inside the mask are the object, not background: object pixels differ in colour
    statistics from the ring of background around them."""
    w = source_world(SMALL, cache_dir=tmp_path)
    from camtrap_ssl.data.synthetic.worlds import object_image
    rng = np.random.default_rng(0)
    img, mask = object_image("zebra", rng, 64)
    # zebra: inside the mask nearly black-and-white pixels dominate (stripes)
    px = img[mask].astype(float)
    bw = (px.max(1) - px.min(1) < 40) & ((px.mean(1) < 70) | (px.mean(1) > 180))
    assert bw.mean() > 0.6
    assert w.masks_train.any(axis=(1, 2)).all()


def test_cache_is_reused(tmp_path):
    source_world(SMALL, cache_dir=tmp_path)
    files = list(tmp_path.glob("source-*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = source_world(SMALL, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime
    assert len(list(tmp_path.iterdir())) == 1  # no temp files left behind
    assert again.images_train.shape[0] == 2 * 20


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CAMTRAP_SSL_CACHE")
    assert default_cache_dir().name == "camtrap_ssl"


def test_similar_world_is_cifar_like(tmp_path):
    w = similar_world(SMALL, cache_dir=tmp_path)
    assert w.images_train.shape[1:] == (32, 32, 3)
    assert len(w.classes) == 10
    assert np.bincount(w.labels_val, minlength=10).tolist() == [1] * 10
    # the same painters behind most classes: it overlaps the source world, as CIFAR overlaps
    # ImageNet, but not completely
    shared = set(SIMILAR_CLASSES) & set(SOURCE_CLASSES)
    assert 4 <= len(shared) < 10


def test_bad_profile_and_empty_profile_fail_early(tmp_path):
    with pytest.raises(ValueError, match="allowed"):
        source_world("huge", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="paper"):
        source_world("paper", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------
# camera-trap worlds
# ------------------------------------------------------------------------------------------------
import datetime as dt  # noqa: E402
import json  # noqa: E402
from collections import Counter  # noqa: E402

from PIL import Image  # noqa: E402

from camtrap_ssl.data.synthetic import (
    camtrap_world,
    class_frequencies,
    gallery,
    plan_sequences,
    write_camtrap_world,
)


@pytest.fixture(scope="module")
def serengeti(tmp_path_factory):
    root = tmp_path_factory.mktemp("ser")
    return write_camtrap_world("serengeti", root, "tiny", seed=0)


@pytest.fixture(scope="module")
def ena24(tmp_path_factory):
    root = tmp_path_factory.mktemp("ena")
    return write_camtrap_world("ena24", root, "tiny", seed=0)


def _load(path):
    return json.loads(path.read_text())


def _rgb(root, im):
    return np.asarray(Image.open(root / im["file_name"]).convert("RGB")).astype(int)


@pytest.mark.parametrize("which", ["serengeti", "ena24"])
def test_coco_camera_traps_validity(which, request):
    path = request.getfixturevalue(which)
    doc = _load(path)
    assert set(doc) == {"info", "images", "categories", "annotations"}
    assert {"version", "description", "date_created", "contributor"} <= set(doc["info"])
    p = get_profile("tiny")
    W, H = p.camtrap_size
    assert len(doc["images"]) == (p.serengeti_images if which == "serengeti" else p.ena24_images)
    images = {im["id"]: im for im in doc["images"]}
    assert len(images) == len(doc["images"])
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert "empty" in cats.values()
    labels_of = {}
    for a in doc["annotations"]:
        assert a["image_id"] in images and a["category_id"] in cats
        labels_of.setdefault(a["image_id"], set()).add(cats[a["category_id"]])
        if cats[a["category_id"]] == "empty":
            assert "bbox" not in a and "mask_file" not in a
        if "bbox" in a:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= W and y + h <= H
        if which == "serengeti":
            assert a["sequence_level_annotation"] is True
    assert set(labels_of) == set(images)  # every image is labelled (empty is a label)
    seqs = {}
    for im in doc["images"]:
        assert not im["file_name"].startswith("/") and (path.parent / im["file_name"]).is_file()
        assert (im["width"], im["height"]) == (W, H)
        dt.datetime.strptime(im["datetime"], "%Y-%m-%d %H:%M:%S")
        seqs.setdefault(im["seq_id"], []).append(im)
        if which == "serengeti":
            season = im["season"]
            parts = im["file_name"].split("/")
            assert parts[0] == season and parts[1] == im["location"]
            assert parts[3].startswith(f"{season}_{im['location']}_") and parts[3].endswith(".JPG")
    for frames in seqs.values():
        n = frames[0]["seq_num_frames"]
        assert len(frames) == n and sorted(f["frame_num"] for f in frames) == list(range(n))
        assert len({f["location"] for f in frames}) == 1
        assert len({frozenset(labels_of[f["id"]]) for f in frames}) == 1  # one sequence label
    with Image.open(path.parent / doc["images"][0]["file_name"]) as im:
        assert im.format == "JPEG" and im.size == (W, H)


def test_serengeti_carries_the_hard_cases(serengeti):
    doc = _load(serengeti)
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert {"zebra", "guineaFowl", "ostrich", "lionMale", "wildebeest", "empty"} <= set(cats.values())
    per_image = Counter(a["image_id"] for a in doc["annotations"])
    assert max(per_image.values()) >= 2  # several animals in one frame
    nonempty = [a for a in doc["annotations"] if cats[a["category_id"]] != "empty"]
    # a labelled frame whose animal has left (or not yet entered): label kept, no bbox
    assert any("bbox" not in a for a in nonempty)
    assert len({im["location"] for im in doc["images"]}) >= 3
    assert len({im["season"] for im in doc["images"]}) >= 2
    # animals cut by the frame edge
    W, H = get_profile("tiny").camtrap_size
    boxes = [a["bbox"] for a in nonempty if "bbox" in a]
    assert any(x == 0 or x + w == W or y == 0 for x, y, w, h in boxes)


def test_long_tail_and_uniform_frequencies():
    plan = plan_sequences("serengeti", "demo", seed=0)
    counts = Counter(s.label for s in plan)
    animals = {k: v for k, v in counts.items() if k != "empty"}
    assert max(animals, key=animals.get) == "wildebeest"
    assert max(animals.values()) >= 5 * min(animals.values())
    assert min(animals.values()) >= 10  # the Study 3 classes still have material
    assert sum(s.n_frames for s in plan) == get_profile("demo").serengeti_images
    freqs = class_frequencies("ena24")
    animals = [v for k, v in freqs.items() if k != "empty"]
    assert max(animals) <= 1.5 * min(animals)
    assert abs(sum(freqs.values()) - 1) < 1e-9


def test_night_frames_are_greyscale_and_day_frames_are_not(serengeti):
    doc = _load(serengeti)
    root = serengeti.parent
    night = [im for im in doc["images"] if int(im["datetime"][11:13]) < 6 or int(im["datetime"][11:13]) >= 19]
    day = [im for im in doc["images"] if 8 <= int(im["datetime"][11:13]) < 17]
    assert night and day
    for im in night[:10]:
        a = _rgb(root, im)
        assert np.abs(a[..., 0] - a[..., 1]).max() <= 6 and np.abs(a[..., 1] - a[..., 2]).max() <= 6
    chroma = [np.abs(_rgb(root, im)[..., 2] - _rgb(root, im)[..., 0]).mean() for im in day[:10]]
    assert np.mean(chroma) > 10
    # the timestamp strip: black band with white digits along the bottom
    a = _rgb(root, doc["images"][0])
    band = a[-3:]
    assert (band < 40).mean() > 0.5 and (band > 200).any()


def test_masks_inside_bboxes_and_on_the_animal(serengeti):
    doc = _load(serengeti)
    root = serengeti.parent
    n = 0
    for a in doc["annotations"]:
        if "mask_file" not in a:
            continue
        m = np.asarray(Image.open(root / a["mask_file"]))
        assert set(np.unique(m)) <= {0, 255}
        ys, xs = np.nonzero(m)
        x, y, w, h = a["bbox"]
        assert xs.min() == x and ys.min() == y and xs.max() + 1 == x + w and ys.max() + 1 == y + h
        n += 1
    assert n > 20


def test_mask_pixels_differ_from_the_background_render():
    from camtrap_ssl.data.synthetic.scenes import make_site, render_frame

    plan = [s for s in plan_sequences("serengeti", "tiny", seed=0) if s.individuals]
    site = make_site("savanna", np.random.default_rng(1), 96, 128, 2)
    checked = 0
    for s in plan[:6]:
        kw = dict(height=96, width=128, ss=2, night=s.night, light=s.light, tint=s.tint,
                  seed_seq=[0, s.index])
        with_animal, ids = render_frame(site, s.individuals, s.individuals[0].anchor, **kw)
        without, ids0 = render_frame(site, s.individuals, s.individuals[0].anchor,
                                     draw_animals=False, **kw)
        assert not ids0.any()
        mask = ids > 0
        if mask.sum() < 20:
            continue
        diff = np.abs(with_animal.astype(int) - without.astype(int)).sum(-1)
        assert (diff[mask] > 12).mean() > 0.5  # the animal's pixels are not background
        assert np.median(diff[~mask]) == 0  # elsewhere the frame is the same background
        checked += 1
    assert checked >= 3


def test_camtrap_determinism(serengeti, tmp_path):
    again = write_camtrap_world("serengeti", tmp_path / "a", "tiny", seed=0)
    assert again.read_bytes() == serengeti.read_bytes()
    doc = _load(serengeti)
    for im in doc["images"][::25]:
        assert np.array_equal(_rgb(serengeti.parent, im), _rgb(again.parent, im))
    one = write_camtrap_world("ena24", tmp_path / "c", "tiny", seed=0)
    other = write_camtrap_world("ena24", tmp_path / "b", "tiny", seed=1)
    assert other.read_bytes() != one.read_bytes()
    assert not np.array_equal(_rgb(one.parent, _load(one)["images"][0]),
                              _rgb(other.parent, _load(other)["images"][0]))


def test_camtrap_cache_reused_and_unknown_names(tmp_path):
    p = camtrap_world("ena24", "tiny", cache_dir=tmp_path)
    assert p.name == "ena24.json" and p.is_file()
    mtime = p.stat().st_mtime_ns
    assert camtrap_world("ena24", "tiny", cache_dir=tmp_path) == p
    assert p.stat().st_mtime_ns == mtime
    assert [d.name for d in tmp_path.iterdir()] == [p.parent.name]  # no temp folders left
    for bad in (lambda: write_camtrap_world("nacti", tmp_path / "x", "tiny"),
                lambda: camtrap_world("nacti", "tiny", cache_dir=tmp_path)):
        with pytest.raises(ValueError, match=r"allowed: \['ena24', 'serengeti'\]"):
            bad()
    assert not (tmp_path / "x").exists()


def test_gallery(serengeti, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = gallery(serengeti, n=8)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 8 and all(a.get_title() for a in shown)
    assert any(a.patches for a in shown)  # bbox outlines
    plt.close(fig)
    w = source_world(SMALL, cache_dir=tmp_path)
    fig = gallery(w, n=20)
    titles = {a.get_title() for a in fig.axes if a.images}
    assert titles == set(w.classes)  # round-robin: every class once
    plt.close(fig)
    with pytest.raises(FileNotFoundError):
        gallery(tmp_path / "missing.json")
