"""The crop view (data.crops): square crops around the animal's box, cut from the original frames."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from camtrap_ssl.data import cct, crops, embedded


def test_window_is_square_and_holds_the_box_and_margin():
    x0, y0, side = crops.crop_window((0.25, 0.5, 0.2, 0.1), 400, 300, margin=0.1)
    bx0, by0, bw, bh = 100, 150, 80, 30
    assert side == pytest.approx(80 * 1.2)  # the longer side + 10 % on each side
    assert x0 <= bx0 - 8 + 1e-9 and x0 + side >= bx0 + bw + 8 - 1e-9  # whole box plus margin
    assert y0 <= by0 and y0 + side >= by0 + bh
    assert x0 + side / 2 == pytest.approx(bx0 + bw / 2)  # centred where it fits


def _frame_with_rectangle(path, size=(200, 150), box=(120, 40, 50, 30)):
    a = np.zeros((size[1], size[0], 3), np.uint8)
    x, y, w, h = box
    a[y:y + h, x:x + w] = (255, 0, 0)
    Image.fromarray(a).save(path)
    return box


def test_crop_of_a_known_rectangle_is_the_rectangle_plus_margin(tmp_path):
    x, y, w, h = _frame_with_rectangle(tmp_path / "a.png")
    rel = (x / 200, y / 150, w / 200, h / 150)
    side = 50 * 1.2  # 60 pixels: crop at 60 so that one crop pixel is one frame pixel
    crop, = crops.crop_image(tmp_path / "a.png", [rel], 60, margin=0.1)
    red = (crop[..., 0] > 128) & (crop[..., 1] < 128)
    assert crop.shape == (60, 60, 3)
    assert red.sum() == pytest.approx(50 * 30, rel=0.08)  # the whole rectangle is inside
    cols, rows = np.flatnonzero(red.any(0)), np.flatnonzero(red.any(1))
    assert cols[0] == pytest.approx(5, abs=1) and cols[-1] == pytest.approx(54, abs=1)  # 5 = margin
    assert rows[0] == pytest.approx((side - 30) / 2, abs=1)  # centred vertically
    assert not red[:, :4].any() and not red[:, -4:].any()  # the margin is background


def test_box_at_the_border_shifts_the_square_inside_the_frame(tmp_path):
    x, y, w, h = _frame_with_rectangle(tmp_path / "b.png", box=(0, 110, 40, 40))  # bottom-left corner
    rel = (0, 110 / 150, 40 / 200, 40 / 150)
    x0, y0, side = crops.crop_window(rel, 200, 150, 0.1)
    assert (x0, y0, side) == pytest.approx((0, 150 - 48, 48))  # clamped, still square, no padding
    crop, = crops.crop_image(tmp_path / "b.png", [rel], 48, margin=0.1)
    red = (crop[..., 0] > 128) & (crop[..., 1] < 128)
    assert red.sum() == pytest.approx(1600, rel=0.05)
    assert red[-1, 0] and red[8, 0] and not red[:7].any()  # in the bottom-left corner of the crop
    # a box larger than the frame's height: a square wider than the frame is padded with grey
    big = (0.2, 0.0, 0.7, 1.0)
    x0, y0, side = crops.crop_window(big, 200, 150, 0.1)
    assert side == pytest.approx(180) and y0 == pytest.approx(-15) and x0 == pytest.approx(20)
    crop, = crops.crop_image(tmp_path / "b.png", [big], 180, margin=0.1)
    assert (crop[0] == crops.FILL).all() and (crop[-1] == crops.FILL).all()


def test_information_strip_never_enters_a_crop(tmp_path):
    a = np.full((100, 100, 3), 40, np.uint8)
    a[90:] = 255  # the stamp
    Image.fromarray(a).save(tmp_path / "s.png")
    crop, = crops.crop_image(tmp_path / "s.png", [(0.4, 0.7, 0.2, 0.2)], 24, strip_fraction=0.1)
    assert crop.max() < 100


def test_embedded_crops_contain_the_mask():
    frame = embedded.load_target("syn_serengeti", "tiny", masks=True, progress=False)
    view = crops.embedded_crop_target("syn_serengeti", "tiny", masks=True, progress=False)
    for ds, fr in ((view.train, frame.train), (view.val, frame.val)):
        share = ds.masks.flatten(1).mean(1)
        assert (share > 0.05).all()  # every crop holds its animal
        assert share.mean() > 5 * fr.masks.mean()  # far more of the crop than of the frame
        assert len(ds.ids) == len(ds) == len(ds.sequence_ids) == len(ds.locations)
    assert set(view.val.locations) == set(frame.val.locations)  # the frame target's split
    assert "empty" not in view.classes and view.identity["view"] == "box"
    assert view.identity["margin"] == 0.1 and view.identity["empty"] == "drop"
    assert view.train.images.shape[-1] == 32  # the profile's stored size
    # several boxes on one image: one sample each
    ids = list(view.train.ids) + list(view.val.ids)
    assert len(ids) > len(set(ids))


def _md(files_boxes, threshold_meta=0.2):
    return {"info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt",
                     "detector_metadata": {"typical_detection_threshold": threshold_meta}},
            "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
            "images": [{"file": f, "detections": [{"category": "1", "conf": c, "bbox": b}
                                                  for c, b in dets]} for f, dets in files_boxes]}


def test_detector_boxes_threshold_and_several_boxes(tmp_path):
    from camtrap_ssl.data import synthetic
    index = cct.load_cct(synthetic.camtrap_world("serengeti", "tiny"))
    empty = index.category_ids[0] if index.class_names[0] == "empty" else None
    animal = [(i, c) for i, c in index.samples if c != empty]
    (a, _), (b, _) = animal[0], animal[5]
    fa, fb = index.images[a]["file_name"], index.images[b]["file_name"]
    md = _md([(fa, [(0.9, [0.1, 0.1, 0.2, 0.2]), (0.5, [0.5, 0.3, 0.2, 0.3])]),
              (fb, [(0.1, [0.1, 0.1, 0.2, 0.2])])])
    boxes, counts = crops.detector_boxes(index, md, threshold=0.2)
    assert [bx.image_id for bx in boxes] == [a, a]  # two boxes, two samples; b's is below 0.2
    assert counts["images_without_a_box"] == 1 and counts["threshold"] == 0.2
    assert boxes[0].conf == 0.9 and boxes[1].bbox == (0.5, 0.3, 0.2, 0.3)
    low, _ = crops.detector_boxes(index, md, threshold=0.05)
    assert [bx.image_id for bx in low] == [a, a, b]
    # file names relative to a folder above the data: still matched
    up = _md([("data/" + fa, [(0.9, [0.1, 0.1, 0.2, 0.2])])])
    assert len(crops.detector_boxes(index, up)[0]) == 1
    with pytest.raises(ValueError, match="names none"):
        crops.detector_boxes(index, _md([("elsewhere/x.jpg", [])]))


def test_bad_boxes_are_refused_naming_the_image():
    from camtrap_ssl.data import synthetic
    index = cct.load_cct(synthetic.camtrap_world("serengeti", "tiny"))
    iid = index.samples[0][0]
    md = _md([(index.images[iid]["file_name"], [(0.9, [0.5, 0.5, 0.0, 0.2])])])
    with pytest.raises(ValueError, match=f"image {iid!r}.*width and height > 0"):
        crops.detector_boxes(index, md)
    with pytest.raises(ValueError, match="image 'x'"):
        crops._check_box([0.8, 0.1, 0.5, 0.1], "x")  # ends past the frame
    with pytest.raises(ValueError, match="empty='frame'"):
        crops.crop_view(index, empty="frame")


def test_crop_view_from_a_detector_file_drops_empty_images(tmp_path):
    from camtrap_ssl.data import synthetic
    path = synthetic.camtrap_world("serengeti", "tiny")
    index = cct.load_cct(path)
    # every labelled frame gets the box of its first annotation, except frames of one site
    files = []
    for iid, c in index.samples:
        anns = [x for x in index.annotations_by_image[iid] if x.get("bbox")]
        im = index.images[iid]
        det = [] if not anns or im["location"] == "C08" else \
            [(0.8, [anns[0]["bbox"][0] / 64, anns[0]["bbox"][1] / 48, anns[0]["bbox"][2] / 64,
                    anns[0]["bbox"][3] / 48])]
        files.append((im["file_name"], det))
    (tmp_path / "md.json").write_text(json.dumps(_md(files)))
    view = crops.crop_view(index, tmp_path / "md.json", 32, seed=0, progress=False)
    ids = set(view.train.ids) | set(view.val.ids)
    assert not any(index.images[i]["location"] == "C08" for i in ids)
    assert view.identity["boxes"]["threshold"] == 0.2 and "sha256" in view.identity["boxes"]
    assert np.isfinite(view.train.box_conf).all()


def test_user_crop_target_from_a_camtrapdp_copy(tmp_path):
    from camtrap_ssl.data import camtrapdp_write, synthetic
    pkg = camtrapdp_write.cct_to_camtrapdp(synthetic.camtrap_world("serengeti", "tiny"), tmp_path / "dp")
    view = crops.user_crop_target(pkg, profile="tiny", split="frame", multi_label="per_category",
                                  progress=False)
    from camtrap_ssl.core.profiles import get_profile
    own = get_profile("tiny", val_images=())  # the world's own boxes, none of its extra frames
    direct = crops.embedded_crop_target("syn_serengeti", own, strip_fraction=0.0, progress=False)
    assert view.identity["kind"] == "camtrapdp" and view.identity["view"] == "box"
    outside = view.identity["counts"]["boxes_outside_the_split"]  # several-species frames
    assert len(view.train) + len(view.val) + outside == len(direct.train) + len(direct.val)
    # multi_label="single" keeps the frames the frame view keeps: the boxes of several-species
    # frames are left out, so crops and frames are drawn from the same images
    single = crops.user_crop_target(pkg, profile="tiny", split="frame", progress=False)
    left_out = single.identity["counts"]["boxes_left_out_by_the_class_options"]
    assert left_out > 0 and len(single.train) + len(single.val) < len(view.train) + len(view.val)
    assert view.train.images.shape[1:] == (3, 32, 32)
