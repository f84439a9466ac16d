"""The one downloader: deadline, stall detector, cut-off resume, early stop; and the
``data download`` CLI's bad input, each against a loopback server that stops by itself."""
import hashlib
import io
import json
import time
import zipfile

import pytest
from range_http import FaultServer, unserved_url

from camtrap_ssl import cli
from camtrap_ssl.core import download as dl
from camtrap_ssl.data import lila

BODY = bytes(range(256)) * 40  # 10 KiB


def test_hung_server_is_given_up_after_the_stall_limit(tmp_path):
    with FaultServer() as srv:
        t0 = time.monotonic()
        with pytest.raises(dl.DownloadTimeout, match="no answer within 0.5 s"):
            dl.fetch(srv.url + "hang/x", tmp_path / "x", stall=0.5, timeout=30)
        assert time.monotonic() - t0 < 3


def test_silent_body_is_a_stall_and_keeps_what_arrived(tmp_path):
    with FaultServer({"f": BODY}) as srv:
        with pytest.raises(dl.DownloadTimeout, match="stalled"):
            dl.fetch(srv.url + "stall/f", tmp_path / "f", stall=0.5, timeout=30)
    assert (tmp_path / "f.part").read_bytes() == BODY[:len(BODY) // 10]
    assert not (tmp_path / "f").exists()


def test_trickle_that_beats_every_per_read_limit_hits_the_deadline(tmp_path):
    # one byte every 0.1 s never trips a 1 s stall limit; only the overall deadline stops it
    with FaultServer({"f": BODY}, trickle_s=0.1) as srv:
        t0 = time.monotonic()
        with pytest.raises(dl.DownloadTimeout, match="1.5 s deadline"):
            dl.fetch(srv.url + "trickle/f", tmp_path / "f", stall=1, timeout=1.5)
        took = time.monotonic() - t0
    assert 1.4 < took < 3
    assert 5 <= (tmp_path / "f.part").stat().st_size < 30


def test_cut_off_transfer_resumes_with_range_and_is_verified(tmp_path):
    sha = hashlib.sha256(BODY).hexdigest()
    with FaultServer({"f": BODY}) as srv:
        with pytest.raises(dl.DownloadError, match=f"after {len(BODY) // 2} of {len(BODY)}"):
            dl.fetch(srv.url + "cut/f", tmp_path / "f", sha256=sha)
        assert dl.fetch(srv.url + "f", tmp_path / "f", sha256=sha) is True
        assert srv.log[-1] == ("/f", f"bytes={len(BODY) // 2}-")
        assert dl.fetch(srv.url + "f", tmp_path / "f") is False  # complete: not fetched again
    assert (tmp_path / "f").read_bytes() == BODY and not (tmp_path / "f.part").exists()


def test_wrong_checksum_deletes_and_bad_limits_are_refused(tmp_path):
    with FaultServer({"f": BODY}) as srv:
        with pytest.raises(dl.ChecksumError, match="does not match"):
            dl.fetch(srv.url + "f", tmp_path / "f", sha256="0" * 64)
    assert not list(tmp_path.iterdir())
    for bad in ({"timeout": 0}, {"stall": -1}, {"stall": None}, {"timeout": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dl.fetch("http://127.0.0.1:9/x", tmp_path / "x", **bad)


def test_fail_fast_trips_only_on_k_identical_first_failures():
    err404 = dl.urllib.error.HTTPError("u", 404, "nf", {}, None)
    err500 = dl.urllib.error.HTTPError("u", 500, "se", {}, None)
    ff = dl.FailFast(3)
    assert [ff.record(err404) for _ in range(3)] == [False, False, True]
    ff = dl.FailFast(3)
    ff.record(None)  # one success first: later failures are just listed
    assert not any(ff.record(err404) for _ in range(5))
    ff = dl.FailFast(3)
    assert not any(ff.record(e) for e in (err404, err500, err404, err404))


def publish(srv, n=20):
    images = [{"id": f"i{k}", "file_name": f"A/i{k}.JPG"} for k in range(n)]
    data = {"images": images, "categories": [{"id": 0, "name": "zebra"}, {"id": 1, "name": "topi"}],
            "annotations": [{"id": k, "image_id": f"i{k}", "category_id": k % 2} for k in range(n)]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fake.json", json.dumps(data))
    srv.files["fake/fake.json.zip"] = buf.getvalue()
    return {"fake": {"title": "fake", "metadata": "fake/fake.json.zip", "json_name": "fake.json",
                     "metadata_sha256": None, "image_base": "fake/images/", "notes": ""}}


def test_images_failing_the_same_way_stop_the_batch_early(tmp_path):
    with FaultServer() as srv:  # metadata served, every image 404
        catalogue = publish(srv)
        with pytest.raises(lila.LilaDownloadError, match=r"first 8 image downloads .*HTTPError 404"):
            lila.download_dataset("fake", tmp_path, base_url=srv.url, catalogue=catalogue,
                                  workers=2, progress=False)
        image_requests = [p for p, _ in srv.log if "/images/" in p]
    assert 8 <= len(image_requests) <= 8 + 2 + 1  # not all 20


def test_complete_files_do_not_disarm_the_early_stop_of_a_rerun(tmp_path):
    with FaultServer() as srv:
        catalogue = publish(srv)
        for k in range(5):  # a previous run fetched these
            (tmp_path / "A").mkdir(exist_ok=True)
            (tmp_path / "A" / f"i{k}.JPG").write_bytes(b"done")
        with pytest.raises(lila.LilaDownloadError, match="first 8 image downloads"):
            lila.download_dataset("fake", tmp_path, base_url=srv.url, catalogue=catalogue,
                                  workers=2, progress=False)
        assert not any(p.endswith(("/i0.JPG", "/i4.JPG")) for p, _ in srv.log)


def test_truncated_local_metadata_is_detected_and_fetched_again(tmp_path):
    with FaultServer() as srv:
        catalogue = publish(srv)
        (tmp_path / "fake.json").write_text('{"images": [{"id": "i0", "file_na')
        rep = lila.download_dataset("fake", tmp_path, base_url=srv.url, catalogue=catalogue,
                                    images=False, progress=False)
    assert len(json.loads(rep.json_path.read_text())["images"]) == 20


@pytest.fixture
def fake_catalogue(monkeypatch):
    srv = FaultServer()
    with srv:
        monkeypatch.setattr(lila, "CATALOGUE", publish(srv))
        yield srv


@pytest.mark.parametrize("args, needle", [
    (["--per-class", "0"], "--per-class: expected a positive int, got '0'"),
    (["--workers", "0"], "--workers: expected a positive int, got '0'"),
    (["--timeout", "nan"], "--timeout: expected a positive float"),
])
def test_cli_refuses_bad_numbers_before_any_request(fake_catalogue, tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit):
        cli.main(["data", "download", "fake", "--dest", str(tmp_path), "--base-url",
                  fake_catalogue.url, *args])
    assert needle in capsys.readouterr().err
    assert fake_catalogue.log == []


def test_cli_names_unknown_classes_and_an_unreachable_server(fake_catalogue, tmp_path):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "download", "fake", "--dest", str(tmp_path / "a"), "--base-url",
                  fake_catalogue.url, "--classes", "zebra,unicorn", "--metadata-only"])
    msg = str(e.value)
    assert msg.startswith("camtrap-ssl data download: classes: ['unicorn'] not in this dataset")
    assert "'topi', 'zebra'" in msg and "\n" not in msg
    base = unserved_url()
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "download", "fake", "--dest", str(tmp_path / "b"), "--base-url", base,
                  "--timeout", "5"])
    assert str(e.value).startswith(f"camtrap-ssl data download: could not download {base}fake/")
