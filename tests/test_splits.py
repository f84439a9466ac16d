"""Split kinds (never a silent frame split) and the gold standard scored with expert labels."""
import json

import pytest

from camtrap_ssl.data import cct, splits

CATS = [{"id": 0, "name": "empty"}, {"id": 1, "name": "zebra"}, {"id": 2, "name": "wildebeest"},
        {"id": 3, "name": "gazelleThomsons"}, {"id": 4, "name": "lionMale"}]


def write_index(tmp_path, seqs, with_seq=True, with_location=True):
    """``seqs``: list of (seq_id, location, volunteers' category id, n_frames); no image files."""
    images, anns = [], []
    for seq, loc, cat, n in seqs:
        for f in range(n):
            iid = f"{seq}-{f}"
            im = {"id": iid, "file_name": f"{iid}.JPG"}
            if with_seq:
                im["seq_id"] = seq
            if with_location:
                im["location"] = loc
            images.append(im)
            anns.append({"id": f"a-{iid}", "image_id": iid, "category_id": cat})
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"images": images, "categories": CATS, "annotations": anns}))
    return cct.load_cct(path)


def test_no_sequences_and_no_locations_is_a_frame_split_only_when_asked(tmp_path):
    idx = write_index(tmp_path, [(f"s{k}", f"L{k % 3}", 1 + k % 2, 3) for k in range(8)],
                      with_seq=False, with_location=False)
    with pytest.raises(ValueError, match="by='frame'") as err:
        splits.split(idx, by="sequence")
    assert "seq_id" in str(err.value) and "set.json" in str(err.value)
    with pytest.raises(ValueError, match="location"):
        splits.split(idx, by="location")
    sp = splits.split(idx, by="frame", val_fraction=0.25, seed=0)
    assert sp.by == "frame" and len(sp.val) == 6 and len(sp.train) == 18  # 24 frames, one group each


def test_frame_split_ignores_sequences_and_sequence_split_keeps_them(tmp_path):
    idx = write_index(tmp_path, [(f"s{k}", "L0", 1, 4) for k in range(6)], with_location=False)
    by_seq = splits.split(idx, by="sequence", val_fraction=0.3, seed=1)
    seq = lambda ids: {idx.images[i]["seq_id"] for i in ids}  # noqa: E731
    assert not seq(by_seq.train) & seq(by_seq.val)
    leaky = [splits.split(idx, by="frame", val_fraction=0.3, seed=s) for s in range(10)]
    assert any(seq(sp.train) & seq(sp.val) for sp in leaky)  # which is why it must be asked for


def test_expert_labels_replace_the_volunteers_and_impossible_events_are_dropped(tmp_path):
    seqs = [("SER_S1#B01#1#1", "B01", 1, 3),  # volunteers: zebra; experts: wildebeest
            ("SER_S1#B01#1#2", "B01", 2, 2),  # experts agree: wildebeest
            ("SER_S1#B02#1#1", "B02", 3, 2),  # experts: impossible
            ("SER_S1#B02#1#2", "B02", 1, 1),  # experts: two species
            ("SER_S1#B03#1#1", "B03", 2, 2),  # reached through the events file: lionMale
            ("SER_S1#B03#1#2", "B03", 1, 4), ("SER_S1#B04#1#1", "B04", 3, 3)]  # training only
    idx = write_index(tmp_path, seqs)
    labels = tmp_path / "gold_standard_data.csv"
    labels.write_text("CaptureEventID,NumSpecies,Species,Count\n"
                      "SER_S1#B01#1#1,1,wildebeest,3\n"
                      "SER_S1#B01#1#2,1,wildebeest,11-50\n"
                      "SER_S1#B02#1#1,1,impossible,1\n"
                      "SER_S1#B02#1#2,2,zebra,1\nSER_S1#B02#1#2,2,wildebeest,2\n"
                      "ASG000abc,1,lionMale,1\n"
                      "ASG000zzz,1,zebra,1\n"  # no image here
                      "SER_S1#B04#1#9,1,aardvark,1\n")  # not a category of the file
    # an events file maps Swanson's event ids to LILA sequences (here some map to themselves)
    events = tmp_path / "events.csv"
    events.write_text("CaptureEventID,seq_id\nASG000abc,SER_S1#B03#1#1\n" + "".join(
        f"{s},{s}\n" for s in ("SER_S1#B01#1#1", "SER_S1#B01#1#2", "SER_S1#B02#1#1",
                               "SER_S1#B02#1#2", "SER_S1#B04#1#9")))
    relabelled, sp, report = splits.expert_gold_standard(idx, labels, events)
    label = {i: relabelled.categories[c] for i, c in relabelled.samples}
    assert sp.by == "gold_standard"
    assert sorted(sp.val) == sorted(["SER_S1#B01#1#1-0", "SER_S1#B01#1#1-1", "SER_S1#B01#1#1-2",
                                     "SER_S1#B01#1#2-0", "SER_S1#B01#1#2-1",
                                     "SER_S1#B03#1#1-0", "SER_S1#B03#1#1-1"])
    assert all(label[f"SER_S1#B01#1#1-{f}"] == "wildebeest" for f in range(3))  # experts, not volunteers
    assert label["SER_S1#B03#1#1-0"] == "lionMale" and "lionMale" in relabelled.class_names
    # impossible and two-species events are in neither side
    dropped = {"SER_S1#B02#1#1-0", "SER_S1#B02#1#1-1", "SER_S1#B02#1#2-0"}
    assert not dropped & set(sp.val) and not dropped & set(sp.train) and dropped <= set(sp.excluded)
    assert sorted(sp.train) == sorted([f"SER_S1#B03#1#2-{f}" for f in range(4)]
                                      + [f"SER_S1#B04#1#1-{f}" for f in range(3)])
    assert label["SER_S1#B04#1#1-0"] == "gazelleThomsons"  # training keeps the volunteers' labels
    assert report == {"labels_file": str(labels), "events_file": str(events), "events": 7,
                      "impossible": 1, "multi_species": 1, "unknown_species": 1, "unmatched": 1,
                      "scored_events": 3, "relabelled_frames": 3 + 2}
    # without an events file the event ids must be LILA sequence ids: ASG000abc finds nothing
    _, direct, rep = splits.expert_gold_standard(idx, labels)
    assert rep["unmatched"] == 2 and not any(i.startswith("SER_S1#B03#1#1") for i in direct.val)
    # the original index is untouched
    assert {idx.categories[c] for i, c in idx.samples if i.startswith("SER_S1#B01#1#1")} == {"zebra"}


def test_expert_file_without_its_columns_is_refused_naming_them(tmp_path):
    idx = write_index(tmp_path, [("s1", "L0", 1, 1), ("s2", "L1", 2, 1)])
    bad = tmp_path / "gold.csv"
    bad.write_text("event,label\ns1,zebra\n")
    with pytest.raises(ValueError, match="CaptureEventID"):
        splits.expert_gold_standard(idx, bad)
    none = tmp_path / "none.csv"
    none.write_text("CaptureEventID,Species\nnothing,zebra\n")
    with pytest.raises(ValueError, match="none of its 1 capture events"):
        splits.expert_gold_standard(idx, none)
