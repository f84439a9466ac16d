"""A grid of examples from a world, for the book's introduction and for eyeballing the renderer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from camtrap_ssl.core.profiles import get_profile

from .camtrap import FAMILY_DISTANCES, camtrap_world, family_spec


def _pick_array(world, n):
    """Round-robin over classes so every class shows up before any repeats."""
    labels = world.labels_val if len(world.labels_val) else world.labels_train
    images = world.images_val if len(world.labels_val) else world.images_train
    by_class = [np.nonzero(labels == c)[0].tolist() for c in range(len(world.classes))]
    picks = []
    while len(picks) < n and any(by_class):
        for idx in by_class:
            if idx and len(picks) < n:
                picks.append(idx.pop(0))
    return [(images[i], world.classes[labels[i]], []) for i in picks]


def _pick_camtrap(json_path: Path, n):
    """A mix of day, night and empty frames with their boxes, spread over the classes."""
    from PIL import Image

    doc = json.loads(Path(json_path).read_text())
    root = Path(json_path).parent
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    anns: dict = {}
    for a in doc["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)

    def load(im):
        arr = np.asarray(Image.open(root / im["file_name"]).convert("RGB"))
        boxes = [(cats[a["category_id"]], a["bbox"]) for a in anns.get(im["id"], []) if "bbox" in a]
        names = sorted({cats[a["category_id"]] for a in anns.get(im["id"], [])})
        return arr, ", ".join(names), boxes

    def is_night(arr):
        a = arr[: int(arr.shape[0] * 0.9)].astype(int)
        return np.abs(a[..., 0] - a[..., 1]).mean() < 2 and np.abs(a[..., 1] - a[..., 2]).mean() < 2

    images = doc["images"]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    want = {"empty": max(1, n // 6), "night": max(1, n // 3)}
    want["day"] = n - want["empty"] - want["night"]
    got = {"empty": [], "night": [], "day": []}
    seen_classes: set = set()
    for i in order:
        im = images[i]
        names = {cats[a["category_id"]] for a in anns.get(im["id"], [])}
        empty = names == {"empty"}
        if not empty and not any("bbox" in a for a in anns.get(im["id"], [])):
            continue  # show frames whose label is visible
        item = load(im)
        kind = "empty" if empty else ("night" if is_night(item[0]) else "day")
        if len(got[kind]) >= want[kind]:
            continue
        if kind != "empty" and item[1] in seen_classes and len(seen_classes) < len(cats) - 1 \
                and len(got[kind]) >= want[kind] // 2:
            continue  # prefer new classes for the second half of each kind
        seen_classes.add(item[1])
        got[kind].append(item)
        if sum(map(len, got.values())) >= n:
            break
    return got["day"] + got["night"] + got["empty"]


def gallery(world_or_json, n: int = 16, ax=None):
    """Figure with ``n`` examples and their class names.

    ``world_or_json``: a :class:`~camtrap_ssl.synthetic.World` (shows classes round-robin) or the
    path of a COCO Camera Traps JSON (shows day, night and empty frames with bbox outlines).
    With ``ax`` the examples are tiled into that one Axes; otherwise a new grid figure is made.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    if isinstance(world_or_json, (str, Path)):
        path = Path(world_or_json)
        if not path.is_file():
            raise FileNotFoundError(f"world_or_json={str(path)!r} is not a file")
        items = _pick_camtrap(path, n)
    elif hasattr(world_or_json, "classes") and hasattr(world_or_json, "images_train"):
        items = _pick_array(world_or_json, n)
    else:
        raise TypeError("world_or_json must be a World or the path of a COCO Camera Traps JSON, "
                        f"got {type(world_or_json).__name__}")
    cols = int(np.ceil(np.sqrt(len(items) * 1.3)))
    rows = int(np.ceil(len(items) / cols))
    if ax is None:
        h, w = items[0][0].shape[:2]
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.2 * h / w + 0.3 * rows),
                                 squeeze=False)
        for a in axes.flat:
            a.axis("off")
        for a, (img, title, boxes) in zip(axes.flat, items):
            a.imshow(img)
            a.set_title(title, fontsize=8)
            for _, (x, y, bw, bh) in boxes:
                a.add_patch(Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, ec="red", lw=1.2))
        fig.tight_layout()
        return fig
    # one Axes: tile into a mosaic, titles as text
    h = max(i[0].shape[0] for i in items)
    w = max(i[0].shape[1] for i in items)
    pad = max(2, w // 20)
    mosaic = np.full((rows * (h + pad), cols * (w + pad), 3), 255, np.uint8)
    for k, (img, title, boxes) in enumerate(items):
        r, c = divmod(k, cols)
        y0, x0 = r * (h + pad), c * (w + pad)
        mosaic[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
    ax.imshow(mosaic)
    ax.axis("off")
    for k, (img, title, boxes) in enumerate(items):
        r, c = divmod(k, cols)
        y0, x0 = r * (h + pad), c * (w + pad)
        ax.text(x0 + 1, y0 + 1, title, fontsize=6, va="top", color="white",
                bbox=dict(facecolor="black", alpha=0.5, pad=1, lw=0))
        for _, (x, y, bw, bh) in boxes:
            ax.add_patch(Rectangle((x0 + x - 0.5, y0 + y - 0.5), bw, bh, fill=False, ec="red", lw=1))
    return ax.figure


def family_gallery(profile, distances=None, n: int = 5):
    """The same ``n`` frames at every distance of the domain-distance family: one row per
    distance, one column per frame (the family shares its plan, so a file name is the same scene
    with other difficulties switched on; :data:`~camtrap_ssl.data.synthetic.FAMILY_STEPS` says
    what each row adds)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    p = get_profile(profile)
    distances = list(FAMILY_DISTANCES if distances is None else distances)
    paths = {d: camtrap_world(family_spec(d), p, n_images=p.family_images) for d in distances}
    doc = json.loads(paths[distances[-1]].read_text())
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    label = {a["image_id"]: cats[a["category_id"]] for a in doc["annotations"]}
    # frames with an animal, one per sequence, spread over the classes
    picks, seen = [], set()
    for im in doc["images"]:
        name = label.get(im["id"], "empty")
        if name != "empty" and name not in seen and im.get("frame_num", 0) == 0:
            picks.append(im)
            seen.add(name)
        if len(picks) == n:
            break
    w, h = p.camtrap_size
    fig, axes = plt.subplots(len(distances), len(picks), squeeze=False,
                             figsize=(1.9 * len(picks), 1.9 * len(distances) * h / w + 0.3))
    for r, d in enumerate(distances):
        for c, im in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(Image.open(paths[d].parent / im["file_name"]).convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label[im["id"]], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"distance {d}", fontsize=8)
    fig.tight_layout()
    return fig
