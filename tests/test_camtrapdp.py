"""Camtrap DP packages as targets: the reader's labelling rules, remote media over a loopback
server, the writer and add_observations, and one test per refusal of bad input."""
import csv
import io
import json
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image
from range_http import FaultServer, unserved_url

from camtrap_ssl.data import camtrapdp, camtrapdp_write, user

FOX, BADGER = "Vulpes vulpes", "Meles meles"
T0 = datetime(2021, 6, 1, 10, 0, 0, tzinfo=timezone.utc)


def jpeg(seed: int, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def make_package(root, remote_url=None, n_dep=6):
    """Six deployments (one per location): per deployment a fox event and a badger event of two
    media each (ids not contiguous), a blank medium; plus the quirks the tests look for."""
    root.mkdir(parents=True, exist_ok=True)
    deps, media, obs, served = [], [], [], {}
    k = 0

    def medium(dep, t, name=None, remote=False, write=True):
        nonlocal k
        mid = name or f"m{7 * k + 3}"
        k += 1
        data = jpeg(k)
        if remote and remote_url:
            served[f"{mid}.jpg"] = data
            path = f"{remote_url}{mid}.jpg"
        else:
            path = f"media/{dep}/{mid}.jpg"
            if write:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(data)
        media.append({"mediaID": mid, "deploymentID": dep, "timestamp": t, "filePath": path,
                      "filePublic": True, "fileMediatype": "image/jpeg"})
        return mid

    def ob(dep, mid, t0, t1, kind, name=None, level="media", event=None, box=None):
        row = {"observationID": f"o{len(obs) * 5 + 1}", "deploymentID": dep, "mediaID": mid,
               "eventID": event, "eventStart": t0, "eventEnd": t1, "observationLevel": level,
               "observationType": kind, "scientificName": name}
        if box:
            row.update(zip(camtrapdp.BOX_FIELDS, box))
        obs.append(row)

    for d in range(n_dep):
        dep = f"dep{d}"
        base = T0 + timedelta(days=d)
        deps.append({"deploymentID": dep, "locationID": f"loc{d}", "latitude": 50.0 + d,
                     "longitude": 4.0, "deploymentStart": T0 - timedelta(days=1),
                     "deploymentEnd": T0 + timedelta(days=30)})
        for j, (name, remote) in enumerate(((FOX, d == 4), (BADGER, False))):
            t = base + timedelta(minutes=10 * j)
            for f in range(2):
                mid = medium(dep, t + timedelta(seconds=f), remote=remote)
                ob(dep, mid, t, t + timedelta(seconds=1), "animal", name, event=f"e{d}-{j}",
                   box=(0.1, 0.2, 0.3, 0.4) if name == FOX else None)
        t = base + timedelta(minutes=30)
        mid = medium(dep, t, write=d != 5)  # dep5's blank medium is missing on disk
        ob(dep, mid, t, t, "blank")
    # dep0: a medium labelled only by an event-level observation, one where media level wins
    t = T0 + timedelta(minutes=40)
    medium("dep0", t, "ev-only")
    medium("dep0", t + timedelta(seconds=2), "ev-both")
    ob("dep0", None, t - timedelta(seconds=1), t + timedelta(seconds=5), "animal", FOX,
       level="event", event="E-ev")
    ob("dep0", "ev-both", t + timedelta(seconds=2), t + timedelta(seconds=2), "animal", BADGER)
    # dep1: a medium inside two overlapping events (union), dep2: two species on one medium
    t = T0 + timedelta(days=1, minutes=40)
    medium("dep1", t, "two-events")
    ob("dep1", None, t, t + timedelta(seconds=9), "animal", FOX, level="event", event="E-a")
    ob("dep1", None, t - timedelta(seconds=9), t, "animal", BADGER, level="event", event="E-b")
    t = T0 + timedelta(days=2, minutes=40)
    medium("dep2", t, "two-species")
    ob("dep2", "two-species", t, t, "animal", FOX)
    ob("dep2", "two-species", t, t, "animal", BADGER)
    # dep3: not yet classified
    t = T0 + timedelta(days=3, minutes=40)
    medium("dep3", t, "pending")
    ob("dep3", "pending", t, t, "unclassified")
    camtrapdp_write.write_camtrapdp(root, deps, media, obs, name="fixture")
    return root, served


def rewrite(path, fn):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = fn(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def col(rows, name):
    return rows[0].index(name)


# -- the reader's rules ------------------------------------------------------------------------
def test_labels_follow_media_then_event_rules(tmp_path):
    root, _ = make_package(tmp_path / "pkg")
    pkg = camtrapdp.read_camtrapdp(root)
    labels, counts = camtrapdp.media_labels(pkg)
    assert labels["ev-only"]["classes"] == [FOX]  # labelled by its event's time window
    assert labels["ev-only"]["event"] == "E-ev"
    assert labels["ev-both"]["classes"] == [BADGER]  # media level wins over the event
    assert sorted(labels["two-events"]["classes"]) == [BADGER, FOX]  # union of both events
    assert sorted(labels["two-species"]["classes"]) == [BADGER, FOX]
    assert "pending" not in labels and counts["unclassified_observations"] == 1
    fox_media = [m for m, lab in labels.items() if lab["classes"] == [FOX] and lab["boxes"]]
    assert len(fox_media) == 12 and labels[fox_media[0]]["boxes"] == [(FOX, [0.1, 0.2, 0.3, 0.4])]
    blank = [m for m, lab in labels.items() if lab["classes"] == ["blank"]]
    assert len(blank) == 6


def test_gap_events_split_bursts_by_time(tmp_path):
    root, _ = make_package(tmp_path / "pkg")
    pkg = camtrapdp.read_camtrapdp(root)
    bursts = camtrapdp.gap_events(pkg)
    dep0 = sorted((camtrapdp._parse_time(m["timestamp"]), mid) for mid, m in pkg.media.items()
                  if m["deploymentID"] == "dep0")
    ids = [bursts[mid] for _, mid in dep0]
    assert ids[0] == ids[1] and ids[1] != ids[2]  # one second apart, then ten minutes
    assert len(set(ids)) == 4  # fox pair, badger pair, blank, the two event media 2 s apart


def test_loads_with_remote_media_and_lists_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    with FaultServer() as srv:
        root, served = make_package(tmp_path / "pkg", remote_url=srv.url)
        srv.files.update(served)
        t = user.load_user_target(root, size=16, progress=False)
        n_requests = len(srv.log)
        assert n_requests == 2
        again = user.load_user_target(root, size=16, progress=False)
        assert len(srv.log) == n_requests  # fetched once, then read from the cache
    assert t.classes == [BADGER, FOX, "blank"]
    assert t.identity["split"] == "location" and t.identity["stands_in_for"] is None
    assert t.stands_in_for is None
    assert len(t.identity["bad_files"]) == 1 and "dep5" in t.identity["bad_files"][0]
    # 12 fox + 12 badger + 6 blank + ev-only + ev-both, minus the missing blank, minus
    # two-events and two-species (several species, multi_label='single')
    assert len(t.train) + len(t.val) == 31
    assert t.identity["selection"]["multi_species_images_dropped"] == 2
    val = t.val
    assert len(val.sequence_ids) == len(val) == len(val.locations) == len(val.boxes)
    assert set(val.locations) & set(f"loc{d}" for d in range(6))
    assert not set(val.locations) & set(t.train.locations)  # no site on both sides
    fox = t.classes.index(FOX)
    fox_rows = [k for k in range(len(val)) if int(val.labels[k]) == fox]
    # every fox row carries its relative box, but the one labelled by its event alone
    boxed = sum(val.boxes[k] == [[0.1, 0.2, 0.3, 0.4]] for k in fox_rows)
    assert fox_rows and boxed >= len(fox_rows) - 1 and boxed > 0
    x, y = val[0]
    assert tuple(x.shape) == (3, 16, 16) and float(x.max()) <= 1.0
    assert again.identity["sha256"] == t.identity["sha256"]


def test_per_category_keeps_several_species(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    root, _ = make_package(tmp_path / "pkg")
    t = user.load_user_target(root, size=8, multi_label="per_category", progress=False)
    ids = list(t.train.image_ids) + list(t.val.image_ids)
    assert ids.count("two-events") == 2 and ids.count("two-species") == 2


def test_offline_names_remote_count_and_first(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    root, _ = make_package(tmp_path / "pkg", remote_url=unserved_url())
    with pytest.raises(camtrapdp.CamtrapDPError, match=r"2 of the media are remote URLs") as e:
        user.load_user_target(root, size=8, progress=False, timeout=5)
    assert "mediaID=" in str(e.value) and "offline" in str(e.value)


# -- the writer and add_observations -------------------------------------------------------------
def test_add_observations_appends_machine_rows_to_a_copy(tmp_path):
    root, _ = make_package(tmp_path / "pkg")
    before = (root / "observations.csv").read_text()
    out = camtrapdp_write.add_observations(root, tmp_path / "copy", [
        {"mediaID": "ev-only", "observationType": "animal", "scientificName": FOX,
         "classificationProbability": 0.93, "classifiedBy": "resnet50-simclr"}])
    pkg = camtrapdp.read_camtrapdp(out)
    new = [o for o in pkg.observations if o.get("classificationMethod") == "machine"]
    assert len(new) == 1 and new[0]["classifiedBy"] == "resnet50-simclr"
    assert float(new[0]["classificationProbability"]) == 0.93
    assert (root / "observations.csv").read_text() == before  # the source is untouched
    with pytest.raises(camtrapdp.CamtrapDPError, match="classificationProbability"):
        camtrapdp_write.add_observations(root, tmp_path / "bad", [
            {"mediaID": "ev-only", "observationType": "animal", "classificationProbability": 1.5}])
    assert not (tmp_path / "bad").exists()


# -- refusals: one message naming the file, the row or id and the field ----------------------------
def _drop_resource(root):
    d = json.loads((root / "datapackage.json").read_text())
    d["resources"] = [r for r in d["resources"] if r["name"] != "media"]
    (root / "datapackage.json").write_text(json.dumps(d))


def _drop_column(root):
    rewrite(root / "media.csv", lambda rows: [r[:col(rows, "filePath")] + r[col(rows, "filePath") + 1:]
                                             for r in rows])


def _unknown_media(root):
    def fn(rows):
        rows[1][col(rows, "mediaID")] = "no-such-medium"
        return rows
    rewrite(root / "observations.csv", fn)


def _box_outside(root):
    def fn(rows):
        rows[1][col(rows, "bboxX")] = "0.8"
        return rows
    rewrite(root / "observations.csv", fn)


def _duplicate_id(root):
    def fn(rows):
        rows[2][col(rows, "mediaID")] = rows[1][col(rows, "mediaID")]
        return rows
    rewrite(root / "media.csv", fn)


def _unreadable(root):
    (root / "media.csv").write_bytes(b"mediaID,deploymentID\n\xff\xfe\x00garbage\n")


@pytest.mark.parametrize("breaks, names", [
    (_drop_resource, ["datapackage.json", "'media'"]),
    (_drop_column, ["media.csv", "'filePath'"]),
    (_unknown_media, ["observations.csv", "line 2", "mediaID", "no-such-medium"]),
    (_box_outside, ["observations.csv", "line 2", "bboxWidth", "outside the image"]),
    (_duplicate_id, ["media.csv", "line 3", "mediaID"]),
    (_unreadable, ["media.csv", "unreadable CSV"]),
])
def test_bad_package_is_refused_naming_file_row_field(tmp_path, breaks, names):
    root, _ = make_package(tmp_path / "pkg")
    breaks(root)
    with pytest.raises(camtrapdp.CamtrapDPError) as e:
        user.load_user_target(root, size=8, progress=False)
    for n in names:
        assert n in str(e.value), (n, str(e.value))


def test_class_too_small_for_a_split_is_refused_with_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "cache"))
    root, _ = make_package(tmp_path / "pkg")
    pkg = camtrapdp.read_camtrapdp(root)
    rows = list(pkg.observations)
    lone = next(r for r in rows if r.get("mediaID") == "ev-both")
    lone["scientificName"] = "Martes foina"  # one image of a third species
    camtrapdp_write.write_camtrapdp(tmp_path / "pkg2", list(pkg.deployments.values()),
                                    [dict(m, filePath=m["filePath"]) for m in pkg.media.values()],
                                    rows)
    with pytest.raises(ValueError, match=r"'Martes foina' \(1 images in 1 sequence group\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            user.load_user_target(tmp_path / "pkg2", images=root, size=8, progress=False)
    t = user.load_user_target(tmp_path / "pkg2", images=root, size=8, min_images=2, progress=False)
    assert "Martes foina" not in t.classes
    assert t.identity["selection"]["dropped_by_min_images"] == {"Martes foina": 1}


def test_optional_columns_may_be_absent_and_extra_ones_present(tmp_path):
    root, _ = make_package(tmp_path / "pkg")
    rewrite(root / "media.csv", lambda rows: [r[:col(rows, "captureMethod")]
                                             + r[col(rows, "captureMethod") + 1:] + ["x"]
                                             for r in rows])
    assert len(camtrapdp.read_camtrapdp(root).media) == 35
