"""The extra validation frames of the embedded camera-trap stand-ins (profile field ``val_images``):
drawn at the split's own validation sites from random stream 2, named so they cannot collide with
the world's own frames, and changing nothing else (training frames, sites, the in-domain pool,
the names of streams 0 and 1)."""
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data import cct, crops, embedded, synthetic
from camtrap_ssl.data.synthetic import camtrap
from camtrap_ssl.studies import budget

REPO = Path(__file__).resolve().parent.parent
BASE = "aaad6c1"  # the commit before stream >= 2 names were tagged

TINY = get_profile("tiny")
WITHOUT = get_profile("tiny", val_images=())


@pytest.fixture(scope="module")
def frames():
    """(with the profile's extra frames, without them) of tiny syn_serengeti, with masks."""
    return (embedded.load_target("syn_serengeti", TINY, masks=True, progress=False),
            embedded.load_target("syn_serengeti", WITHOUT, masks=True, progress=False))


def test_validation_holds_the_frames_the_profile_asks_for(frames):
    t, base = frames
    wanted = TINY.validation_frames("syn_serengeti")
    assert wanted == 80 and len(base.val) < wanted  # the split's own 36 frames are too few
    assert len(t.val) == wanted
    extra = t.identity["extra_validation"]
    assert extra["n_images"] == wanted - len(base.val) and extra["stream"] == 2
    assert extra["json_sha256"] != t.identity["json_sha256"]
    assert "extra_validation" not in base.identity
    assert len(t.val.ids) == len(t.val.sequence_ids) == len(t.val.locations) == len(t.val)
    assert t.val.masks.shape[0] == len(t.val)
    assert budget.target_sizes("syn_serengeti", TINY)[1] == wanted


def test_training_frames_and_the_own_validation_frames_are_unchanged(frames):
    t, base = frames
    assert torch.equal(t.train.images, base.train.images)
    assert torch.equal(t.train.labels, base.train.labels) and torch.equal(t.train.masks, base.train.masks)
    assert list(t.train.ids) == list(base.train.ids)
    n = len(base.val)  # the split's own rows come first, as they were
    assert torch.equal(t.val.images[:n], base.val.images) and torch.equal(t.val.labels[:n], base.val.labels)
    assert list(t.val.ids[:n]) == list(base.val.ids) and t.classes == base.classes


def test_extra_frames_sit_at_the_validation_sites_only(frames):
    t, base = frames
    extra = set(t.val.locations[len(base.val):])
    own = set(base.val.locations)
    assert extra and extra <= own <= set(embedded.validation_sites(TINY))
    assert not extra & set(t.train.locations)
    assert t.identity["extra_validation"]["sites"] == sorted(own)


def test_ids_and_sequences_are_unique_over_train_and_validation(frames):
    t, base = frames
    ids = list(t.train.ids) + list(t.val.ids)
    assert len(ids) == len(set(ids))
    extra_seqs = set(t.val.sequence_ids[len(base.val):])
    assert not extra_seqs & (set(t.train.sequence_ids) | set(base.val.sequence_ids))
    assert all("x2_" in i for i in t.val.ids[len(base.val):])
    # the labels are the target's classes, read from the categories' names
    assert int(t.val.labels.max()) < len(t.classes)
    assert (t.val.labels[len(base.val):] == t.classes.index("empty")).any() or \
        len(set(t.val.labels[len(base.val):].tolist())) > 1


def test_targets_the_profile_does_not_name_keep_their_split():
    assert TINY.validation_frames("syn_ena24") is None
    t = embedded.load_target("syn_ena24", TINY, progress=False)
    base = embedded.load_target("syn_ena24", WITHOUT, progress=False)
    assert "extra_validation" not in t.identity and t.identity == base.identity
    assert torch.equal(t.val.images, base.val.images) and list(t.val.ids) == list(base.val.ids)
    n = TINY.ena24_images
    assert budget.target_sizes("syn_ena24", TINY) == (n - round(0.25 * n), round(0.25 * n))


def test_the_in_domain_pool_and_the_validation_sites_are_unchanged():
    assert embedded.validation_sites(TINY) == embedded.validation_sites(WITHOUT)
    images, identity = embedded.camtrap_pool(TINY, progress=False)
    again, identity_without = embedded.camtrap_pool(WITHOUT, progress=False)
    assert identity == identity_without and np.array_equal(images, again)


def test_a_second_load_from_a_fresh_cache_is_identical(frames, tmp_path, monkeypatch):
    t, _ = frames
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "fresh"))
    again = embedded.load_target("syn_serengeti", TINY, masks=True, progress=False)
    assert str(tmp_path) in again.identity["extra_validation"]["json"]  # generated afresh
    assert list(again.val.ids) == list(t.val.ids)
    assert torch.equal(again.val.images, t.val.images) and torch.equal(again.val.labels, t.val.labels)
    assert again.identity["extra_validation"]["json_sha256"] == t.identity["extra_validation"]["json_sha256"]


def test_crop_view_validation_grows_and_stays_apart_from_training():
    view = crops.embedded_crop_target("syn_serengeti", TINY, masks=True, progress=False)
    base = crops.embedded_crop_target("syn_serengeti", WITHOUT, masks=True, progress=False)
    extra = view.identity["extra_validation"]
    assert extra["stream"] == 2 and extra["boxes"] > 0
    assert len(view.val) == len(base.val) + extra["boxes"]
    assert torch.equal(view.train.images, base.train.images) and list(view.train.ids) == list(base.train.ids)
    assert torch.equal(view.val.images[:len(base.val)], base.val.images)
    assert not set(view.val.ids) & set(view.train.ids)
    assert set(view.val.locations) == set(base.val.locations)  # the same validation sites
    for attr in ("ids", "sequence_ids", "locations", "image_ids", "boxes", "box_conf"):
        assert len(getattr(view.val, attr)) == len(view.val)
    assert view.val.masks.shape[0] == len(view.val)
    assert (view.val.masks[len(base.val):].flatten(1).mean(1) > 0.05).all()  # each holds its animal
    assert sum(extra["per_class"].values()) == extra["boxes"]
    assert all("x2_" in str(i) for i in view.val.image_ids[len(base.val):])


def test_crop_view_with_detections_leaves_the_extra_frames_out(tmp_path):
    index = cct.load_cct(synthetic.camtrap_world("serengeti", TINY))
    images = []
    for iid, anns in index.annotations_by_image.items():
        im = index.images[iid]
        dets = [{"category": "1", "conf": 0.9,
                 "bbox": [a["bbox"][0] / im["width"], a["bbox"][1] / im["height"],
                          a["bbox"][2] / im["width"], a["bbox"][3] / im["height"]]}
                for a in anns if "bbox" in a]
        images.append({"file": im["file_name"], "detections": dets})
    md = tmp_path / "md.json"
    md.write_text(json.dumps({"info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt",
                                       "detector_metadata": {"typical_detection_threshold": 0.2}},
                              "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
                              "images": images}))
    view = crops.embedded_crop_target("syn_serengeti", TINY, detections=md, progress=False)
    base = crops.embedded_crop_target("syn_serengeti", WITHOUT, detections=md, progress=False)
    assert view.identity["extra_validation"] == ("not used: detections cover the world's own "
                                                 "frames only")
    assert len(view.val) == len(base.val) and list(view.val.ids) == list(base.val.ids)


# -- names ------------------------------------------------------------------------------------------
def _names(spec, profile, **kw):
    seqs = camtrap.plan_sequences(spec, profile, 0, **kw)
    return [n for s in seqs for n in s.frame_names], [camtrap._seq_id(spec, s) for s in seqs]


@pytest.mark.parametrize("name", ["serengeti", "ena24"])
@pytest.mark.parametrize("profile", ["tiny", "demo"])
def test_stream_two_names_never_collide_with_the_worlds_own(name, profile):
    spec = camtrap.SPECS[name]
    files0, seqs0 = _names(spec, profile)
    files2, seqs2 = _names(spec, profile, stream=2)  # every site, the same size: the worst case
    assert not set(files0) & set(files2) and not set(seqs0) & set(seqs2)
    ids = lambda files: {f.rsplit(".", 1)[0] for f in files}  # noqa: E731  (the image ids)
    assert not ids(files0) & ids(files2) and len(ids(files2)) == len(files2)


# digests of (file names, sequence ids) at the base commit: the names of streams 0 and 1 (the
# cached worlds, the shipped checkpoints' pool identity) must stay byte for byte
NAMES_AT_BASE = {
    ("serengeti", "tiny", ()): "caf0db744b0814b526fd8a6992b7ea8d0f51135cd3420014f1073f8d88b7c527",
    ("ena24", "tiny", ()): "b5e045b74b333335a55e50f8806ef524b79b774c0bab00a3eeaf2cdec7403ffa",
    ("serengeti", "tiny", (("n_images", 240), ("stream", 1), ("sites", ("C08", "D10")))):
        "e10ad9f22739c3619dd04d4a0f5df693b428f631a57e716aeac4f074591f3efa",
    ("serengeti", "demo", ()): "cda651ae717c48b411e138552bd72acff171a5fadaafbf916fbb26e539add5b8",
}


@pytest.mark.parametrize("key", list(NAMES_AT_BASE))
def test_stream_zero_and_one_names_are_those_of_the_base_commit(key):
    name, profile, kw = key
    spec = camtrap.SPECS[name]
    seqs = camtrap.plan_sequences(spec, profile, 0, **dict(kw))
    got = hashlib.sha256(json.dumps([[s.frame_names, camtrap._seq_id(spec, s)] for s in seqs]
                                    ).encode()).hexdigest()
    assert got == NAMES_AT_BASE[key]


def _base_module():
    """camtrap.py as it was at the base commit, beside today's render/scenes/worlds."""
    out = subprocess.run(["git", "show", f"{BASE}:camtrap_ssl/data/synthetic/camtrap.py"],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"the base commit {BASE} is not in this checkout's history")
    name = "camtrap_ssl.data.synthetic._camtrap_at_base"
    mod = types.ModuleType(name)
    mod.__package__ = "camtrap_ssl.data.synthetic"
    sys.modules[name] = mod
    try:
        exec(compile(out.stdout, f"{BASE}:camtrap.py", "exec"), mod.__dict__)
    finally:
        del sys.modules[name]
    return mod


@pytest.mark.parametrize("name,kw", [("serengeti", {"n_images": 24}),
                                     ("serengeti", {"n_images": 24, "stream": 1, "sites": ("C08",)}),
                                     ("ena24", {"n_images": 12}),
                                     ("ena24", {"n_images": 12, "stream": 1})])
def test_stream_zero_and_one_worlds_are_byte_identical_to_the_base_commit(name, kw, tmp_path):
    old = _base_module()
    a = old.write_camtrap_world(name, tmp_path / "old", "tiny", 0, **kw).read_bytes()
    b = camtrap.write_camtrap_world(name, tmp_path / "new", "tiny", 0, **kw).read_bytes()
    assert a == b
