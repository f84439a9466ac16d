"""LILA downloader against a loopback HTTP server in LILA's layout: resume, subsets, errors."""
import argparse
import hashlib
import http.server
import io
import json
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image
from range_http import send_headers_for_range, unserved_url

from camtrap_ssl.data import cct, lila

N_IMAGES = 8


class Handler(http.server.BaseHTTPRequestHandler):
    """Static files with ``Range`` support, a request log and injectable faults."""
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        path = srv.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = send_headers_for_range(self, path.read_bytes(), srv.ignore_range)
        cut = srv.cut.pop(self.path, None)
        self.wfile.write(body[:cut] if cut is not None else body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.root, srv.log, srv.cut, srv.ignore_range = root, [], {}, False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def publish(srv, zipped=True):
    """Put a small dataset on the server as LILA does: metadata (zip) + one URL per image."""
    rng = np.random.default_rng(0)
    cats = [{"id": 0, "name": "empty"}, {"id": 1, "name": "zebra"}, {"id": 2, "name": "topi"}]
    images, anns = [], []
    for k in range(N_IMAGES):
        fname = f"S1/B0{k % 2}/B0{k % 2}_R1/S1_B0{k % 2}_R1_PICT{k:04d}.JPG"
        images.append({"id": fname[:-4], "file_name": fname, "location": f"B0{k % 2}",
                       "seq_id": f"seq{k // 2}", "frame_num": k % 2 + 1, "seq_num_frames": 2})
        anns.append({"id": f"a{k}", "image_id": fname[:-4], "category_id": k % 3})
        if k == 5:  # a second species on one image
            anns.append({"id": "a-extra", "image_id": fname[:-4], "category_id": 1})
        p = srv.root / "fake" / "images" / fname
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(p, quality=92)
    data = {"info": {"version": "1.0"}, "images": images, "categories": cats, "annotations": anns}
    raw = json.dumps(data).encode()
    if zipped:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("fake.json", raw)
        raw = buf.getvalue()
    meta = "fake/fake.json.zip" if zipped else "fake/fake.json"
    (srv.root / meta).write_bytes(raw)
    entry = {"title": "fake", "metadata": meta, "json_name": "fake.json",
             "metadata_sha256": hashlib.sha256(raw).hexdigest(), "image_base": "fake/images/",
             "notes": ""}
    return {"fake": entry}, data


def image_paths(srv):
    return sorted((srv.root / "fake" / "images").rglob("*.JPG"))


def test_full_download_then_rerun_skips_everything(server, tmp_path):
    catalogue, data = publish(server)
    dest = tmp_path / "dest"
    rep = lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                                workers=3, progress=False)
    assert rep.downloaded == N_IMAGES and rep.failed == [] and rep.json_path == dest / "fake.json"
    for src in image_paths(server):
        rel = src.relative_to(server.root / "fake" / "images")
        assert (dest / rel).read_bytes() == src.read_bytes()
    idx = cct.load_cct(rep.json_path)  # images sit where the loader looks by default
    assert len(cct.CCTDataset(idx, None, size=8).bad_files) == 0
    n_requests = len(server.log)
    rep2 = lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                                 progress=False)
    assert rep2.skipped == N_IMAGES and rep2.downloaded == 0
    assert len(server.log) == n_requests  # nothing fetched again, metadata included
    assert not list(dest.rglob("*.part"))


def test_interrupted_image_download_resumes_with_range(server, tmp_path):
    catalogue, data = publish(server)
    victim = data["images"][3]["file_name"]
    url_path = "/fake/images/" + victim
    size = (server.root / "fake" / "images" / victim).stat().st_size
    server.cut[url_path] = size // 2
    dest = tmp_path / "dest"
    rep = lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                                workers=2, progress=False)
    assert [f for f, _ in rep.failed] == [victim] and "resume" in rep.failed[0][1]
    assert not (dest / victim).exists()
    assert (dest / (victim + ".part")).stat().st_size == size // 2
    server.log.clear()
    rep2 = lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                                 progress=False)
    assert rep2.downloaded == 1 and rep2.skipped == N_IMAGES - 1 and rep2.failed == []
    assert server.log == [(url_path, f"bytes={size // 2}-")]
    assert (dest / victim).read_bytes() == (server.root / "fake" / "images" / victim).read_bytes()
    assert not (dest / (victim + ".part")).exists()


def test_interrupted_metadata_resumes_and_is_checksummed(server, tmp_path):
    catalogue, _ = publish(server)
    meta_url = "/" + catalogue["fake"]["metadata"]
    total = (server.root / catalogue["fake"]["metadata"]).stat().st_size
    server.cut[meta_url] = total // 3
    dest = tmp_path / "dest"
    with pytest.raises(lila.LilaDownloadError, match="fake.json.zip"):
        lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                              progress=False)
    assert (dest / "fake.json.zip.part").stat().st_size == total // 3
    rep = lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                                images=False, progress=False)
    assert (meta_url, f"bytes={total // 3}-") in server.log
    assert json.loads(rep.json_path.read_text())["info"]["version"] == "1.0"


def test_checksum_mismatch_is_an_error_and_discards_the_file(server, tmp_path):
    catalogue, _ = publish(server)
    catalogue["fake"]["metadata_sha256"] = "0" * 64
    dest = tmp_path / "dest"
    with pytest.raises(lila.LilaDownloadError, match="sha256"):
        lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                              progress=False)
    assert not list(dest.glob("fake.json.zip*")) and not (dest / "fake.json").exists()


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    catalogue, data = publish(server, zipped=False)
    victim = data["images"][0]["file_name"]
    dest = tmp_path / "dest"
    (dest / victim).parent.mkdir(parents=True)
    (dest / (victim + ".part")).write_bytes(b"garbage that is not a prefix")
    server.ignore_range = True
    rep = lila.download_dataset("fake", dest, base_url=server.url, catalogue=catalogue,
                                progress=False)
    assert rep.failed == []
    assert (dest / victim).read_bytes() == (server.root / "fake" / "images" / victim).read_bytes()


def test_class_subset_and_per_class_write_a_subset_file(server, tmp_path):
    catalogue, data = publish(server)
    dest = tmp_path / "dest"
    rep = lila.download_dataset("fake", dest, classes=["ZEBRA", "topi"], per_class=2, seed=1,
                                base_url=server.url, catalogue=catalogue, progress=False)
    sub = json.loads(rep.json_path.read_text())
    assert rep.json_path.name == "fake.subset.json"
    by_img = {}
    for a in sub["annotations"]:
        by_img.setdefault(a["image_id"], set()).add(a["category_id"])
    assert all(cs & {1, 2} for cs in by_img.values())
    for c in (1, 2):
        assert 1 <= sum(1 for cs in by_img.values() if c in cs) <= 3  # 2 + one shared image
    on_disk = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.JPG"))
    assert on_disk == sorted(im["file_name"] for im in sub["images"])
    assert rep.downloaded == len(sub["images"]) < N_IMAGES
    idx = cct.load_cct(rep.json_path, multi_label="per_category")
    assert set(idx.class_names) <= {"zebra", "topi"}
    with pytest.raises(ValueError, match="allowed"):
        lila.download_dataset("fake", dest, classes=["unicorn"], base_url=server.url,
                              catalogue=catalogue, progress=False)


def test_offline_error_names_url_and_remedy(tmp_path):
    base = unserved_url()
    with pytest.raises(lila.LilaDownloadError) as err:
        lila.download_dataset("ena24", tmp_path, base_url=base, timeout=2, progress=False)
    msg = str(err.value)
    assert base + "ena24/ena24.json" in msg and "camtrap-ssl data download" in msg
    with pytest.raises(ValueError, match="allowed"):
        lila.download_dataset("imagenet", tmp_path)
    with pytest.raises(ValueError, match="per_class"):
        lila.download_dataset("ena24", tmp_path, per_class=0)


def test_catalogue_entries_are_complete():
    downloadable = 0
    for name, entry in lila.CATALOGUE.items():
        assert {"title", "metadata", "json_name", "image_base", "metadata_sha256", "images",
                "classes", "licence", "page", "verified", "checked"} <= set(entry), name
        assert entry["verified"] is False  # nothing could be fetched where this was written
        if entry["metadata"] is None:
            continue
        downloadable += 1
        assert entry["image_base"].endswith("/") and not entry["metadata"].startswith("/")
        assert isinstance(entry["images"], int) and entry["images"] > 1000, name
    assert downloadable >= 20
    assert set(lila.CATALOGUE) >= {"serengeti", "nacti", "ena24", "caltech", "wcs", "wellington",
                                   "snapshot_karoo", "snapshot_kruger", "missouri", "idaho",
                                   "orinoquia", "desert_lion", "nz_trailcams", "oregon_critters"}
    assert lila.CATALOGUE["ena24"]["metadata"].endswith("ena24.json")


def test_cli_backend(server, tmp_path, monkeypatch, capsys):
    catalogue, _ = publish(server)
    monkeypatch.setattr(lila, "CATALOGUE", catalogue)
    parser = argparse.ArgumentParser(prog="camtrap-ssl data")
    lila.add_cli(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["download", "fake", "--dest", str(tmp_path / "d"),
                              "--base-url", server.url, "--per-class", "1", "--workers", "2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "fake.subset.json" in out and "0 failed" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["download", "nope", "--dest", "x"])


def test_list_shows_the_whole_catalogue(capsys):
    lila._cli_list(argparse.Namespace())
    out = capsys.readouterr().out
    assert "Snapshot Kgalagadi" in out and "10,357 images, 31 classes" in out
    assert "unverified" in out and "not downloadable yet" in out


def test_new_catalogue_entry_downloads_by_name_with_a_class_subset(server, tmp_path):
    """Snapshot Karoo, published at its catalogue path on a loopback mirror, fetched by name."""
    entry = lila.CATALOGUE["snapshot_karoo"]
    rng = np.random.default_rng(1)
    cats = [{"id": 0, "name": "empty"}, {"id": 1, "name": "kudu"}, {"id": 2, "name": "gemsbokoryx"}]
    images, anns = [], []
    for k in range(6):
        fname = f"KAR_S1/A01/A01_R1/KAR_S1_A01_R1_IMAG{k:04d}.JPG"
        images.append({"id": fname[:-4], "file_name": fname, "location": "A01", "seq_id": f"s{k}"})
        anns.append({"id": f"a{k}", "image_id": fname[:-4], "category_id": k % 3})
        p = server.root / entry["image_base"] / fname
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(p)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(entry["json_name"], json.dumps({"images": images, "categories": cats,
                                                    "annotations": anns}))
    meta = server.root / entry["metadata"]
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_bytes(buf.getvalue())
    report = lila.download_dataset("snapshot_karoo", tmp_path / "karoo", classes=["kudu"],
                                   per_class=1, base_url=server.url, progress=False)
    assert report.downloaded == 1 and not report.failed
    index = cct.load_cct(report.json_path)
    assert index.class_names == ["kudu"] and len(index.samples) == 1
    with pytest.raises(ValueError, match="metadata file name is not in this catalogue"):
        lila.download_dataset("wsu_lynx", tmp_path / "lynx", base_url=server.url)
