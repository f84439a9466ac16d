"""Prepared cache: equals decoding, lists bad files, is reused only while its key matches."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from camtrap_ssl.data import cct
from camtrap_ssl.data import prepare as prep


def make_dataset(root, n=14):
    """LILA-layout JSON + noisy JPEGs of several shapes; three labels, two locations."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(n):
        fname = f"S2/C0{k % 2}/C0{k % 2}_R1/S2_C0{k % 2}_R1_IMAG{k:04d}.JPG"
        h, w = (36, 48) if k % 3 else (50, 30)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = root / fname
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(p, quality=90)
        images.append({"id": k, "file_name": fname, "width": w, "height": h,
                       "location": f"C0{k % 2}", "seq_id": f"s{k // 2}"})
        anns.append({"id": k, "image_id": k, "category_id": 10 + k % 3})
    cats = [{"id": 10, "name": "zebra"}, {"id": 11, "name": "topi"}, {"id": 12, "name": "eland"}]
    path = root / "ds.json"
    path.write_text(json.dumps({"info": {}, "images": images, "categories": cats,
                                "annotations": anns}))
    return path


def test_prepared_equals_decoding_and_lists_bad_files(tmp_path):
    idx = cct.load_cct(make_dataset(tmp_path))
    idx.path_of(4).write_bytes(b"not a jpeg at all")
    raw = idx.path_of(9).read_bytes()
    idx.path_of(9).write_bytes(raw[: len(raw) // 2])
    ids = [k for k in range(14) if k != 0]
    ds = prep.prepare(idx, ids, size=20, out_dir=tmp_path / "cache", progress=False)
    ref = cct.CCTDataset(idx, ids, size=20)
    assert len(ds) == len(ref) == 11
    assert len(ds.bad_files) == 2 and any(str(idx.path_of(9)) in b for b in ds.bad_files)
    assert ds.image_ids == [i for i, _ in ref.samples]
    assert ds.class_names == idx.class_names
    diffs = []
    for k in range(len(ds)):
        (x, y), (xr, yr) = ds[k], ref[k]
        assert x.dtype == torch.float32 and x.shape == (3, 20, 20) and y == yr
        diffs.append((x - xr).abs().max().item())
    assert max(diffs) <= 1 / 255 + 1e-6
    arr = np.load(tmp_path / "cache" / "images.npy", mmap_mode="r")
    assert arr.shape == (11, 20, 20, 3) and arr.dtype == np.uint8  # shrunk in place
    assert (tmp_path / "cache" / "images.npy").stat().st_size == arr.offset + arr.nbytes
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == \
        ["images.npy", "labels.npy", "manifest.json"]
    man = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert man["size"] == 20 and man["source_json_sha256"] == idx.json_sha256


def test_cache_is_reused_only_when_the_key_matches(tmp_path, monkeypatch):
    idx = cct.load_cct(make_dataset(tmp_path, n=6))
    out = tmp_path / "cache"
    first = prep.prepare(idx, None, size=12, out_dir=out, progress=False)
    stamp = (out / "images.npy").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("decoded again although the cache was current")

    monkeypatch.setattr(prep, "decode_image", boom)
    again = prep.prepare(idx, None, size=12, out_dir=out, progress=False)
    assert (out / "images.npy").stat().st_mtime_ns == stamp
    assert torch.equal(again[3][0], first[3][0])
    monkeypatch.undo()
    # another size, another split or another source file each rebuild the cache
    assert prep.prepare(idx, None, size=10, out_dir=out, progress=False)[0][0].shape[-1] == 10
    assert len(prep.prepare(idx, [0, 1, 2], size=10, out_dir=out, progress=False)) == 3
    data = json.loads(idx.json_path.read_text())
    data["info"]["version"] = "changed"
    idx.json_path.write_text(json.dumps(data))
    idx2 = cct.load_cct(idx.json_path)
    assert prep.cache_key(idx2, cct.sample_list(idx2, [0, 1, 2]), 10) != \
        json.loads((out / "manifest.json").read_text())["key"]


def test_incomplete_cache_is_not_used(tmp_path):
    idx = cct.load_cct(make_dataset(tmp_path, n=4))
    out = tmp_path / "cache"
    prep.prepare(idx, None, size=8, out_dir=out, progress=False)
    (out / "manifest.json").unlink()  # as if interrupted before the manifest landed
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        prep.PreparedDataset(out)
    ds = prep.prepare(idx, None, size=8, out_dir=out, progress=False)
    assert len(ds) == 4
    with pytest.raises(ValueError, match="size"):
        prep.prepare(idx, None, size=0, out_dir=out)


def test_shrink_npy_keeps_a_valid_array(tmp_path):
    p = tmp_path / "a.npy"
    a = np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=(1000, 4, 4, 3))
    a[:] = np.arange(1000, dtype=np.uint8)[:, None, None, None]
    a.flush()
    del a
    prep._shrink_npy(p, 7)
    b = np.load(p)
    assert b.shape == (7, 4, 4, 3) and (b[:, 0, 0, 0] == np.arange(7)).all()


def test_each_bad_file_is_listed_once_with_its_path_once(tmp_path):
    idx = cct.load_cct(make_dataset(tmp_path, n=4))
    missing = idx.path_of(2)
    missing.unlink()
    ds = prep.prepare(idx, None, size=8, out_dir=tmp_path / "cache", progress=False)
    assert ds.bad_files == [f"{missing}: missing"]
    ref = cct.CCTDataset(idx, None, size=8, scan="full")
    assert ref.bad_files == [(str(missing), "missing")]


def test_restored_image_is_read_again(tmp_path):
    idx = cct.load_cct(make_dataset(tmp_path, n=4))
    victim = idx.path_of(1)
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])  # truncated download
    out = tmp_path / "cache"
    assert len(prep.prepare(idx, None, size=8, out_dir=out, progress=False)) == 3
    victim.write_bytes(raw)  # the rerun of the download completed it
    ds = prep.prepare(idx, None, size=8, out_dir=out, progress=False)
    assert len(ds) == 4 and ds.bad_files == [] and 1 in ds.image_ids
