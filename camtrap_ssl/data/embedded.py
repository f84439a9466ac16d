"""The embedded world's fine-tuning targets (SPEC section 6), by name, at a profile's size.

``load_target("syn_serengeti", profile)`` returns the same :class:`~camtrap_ssl.data.datasets.Target`
whether the data were generated a second ago or read from the cache. Each ``syn_*`` target names
the study dataset it stands in for, so tables can set our numbers beside the study's.

The camera-trap stand-ins are read as the real sets are: through the COCO Camera Traps reader,
split by location, with the timestamp strip the generator stamps into every frame cut off before
resizing (:mod:`camtrap_ssl.data.strip`), so no model and no saliency map can use its digits.
Their JPEGs are decoded once: the uint8 arrays of every labelled sample are cached under
``<cache>/targets/`` (:func:`decoded_samples`), keyed by what determines their pixels, and every
later call reads that file.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from camtrap_ssl.core import fileio, paths
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, Profile, get_profile
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.data import cct, splits, strip, synthetic
from camtrap_ssl.data.datasets import ArrayDataset, Target
from camtrap_ssl.data.synthetic.scenes import strip_height

# the domain-distance family of RQ1: the Serengeti stand-in at distance k from the source world
FAMILY_TARGETS = tuple(f"syn_serengeti_d{k}" for k in synthetic.FAMILY_DISTANCES)
TARGETS = ("syn_serengeti", "syn_ena24", "syn_cifar", *FAMILY_TARGETS)
CACHE_FORMAT = 1  # bump when the decoding below changes pixels

STANDS_IN_FOR = {"syn_serengeti": "serengeti", "syn_ena24": "ena24", "syn_cifar": "cifar10",
                 **{t: f"serengeti (distance {t[-1]} of {FAMILY_TARGETS[-1][-1]})"
                    for t in FAMILY_TARGETS}}


def family_distance(name: str) -> int | None:
    """The distance of a domain-distance target (``syn_serengeti_d3`` -> 3), else ``None``."""
    return int(name[-1]) if name in FAMILY_TARGETS else None


def _to_uint8_nchw(x01: torch.Tensor) -> torch.Tensor:
    return (x01 * 255).round().clamp(0, 255).to(torch.uint8)


def _resize_uint8(images_nhwc: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return _to_uint8_nchw(x)


def world_strip_fraction(profile: Profile) -> float:
    """The share of a generated frame's rows that its timestamp strip fills (cut off on loading)."""
    height = profile.camtrap_size[1]
    return strip_height(height) / height


def _cache_key(index: cct.CCTIndex, size: int, strip_fraction: float, masks: bool) -> str:
    """What the decoded pixels depend on: the JSON, every file's size and mtime, size, strip, masks."""
    h = hashlib.sha256(json.dumps({"json_sha256": index.json_sha256, "size": size,
                                   "strip_fraction": strip_fraction, "masks": masks,
                                   "format": CACHE_FORMAT}, sort_keys=True).encode())
    for iid, label in index.samples:
        files = [index.images[iid]["file_name"]]
        if masks:
            files += [a["mask_file"] for a in index.annotations_by_image.get(iid, []) if "mask_file" in a]
        for f in files:
            st = (index.image_root / f).stat()
            h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        h.update(f"{iid!r}\t{label}\n".encode())
    return h.hexdigest()[:20]


def decoded_samples(index: cct.CCTIndex, size: int, strip_fraction: float, masks: bool = False,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """uint8 ``images`` (N x 3 x size x size), ``labels``, ``ids`` (and ``masks``) of every sample.

    Rows follow ``index.samples``. The first call decodes the JPEGs (and mask PNGs) and writes the
    arrays atomically to ``<cache>/targets/<world>-<size>px-<key>.npz``; a call whose key matches
    reads that file instead. The key covers the JSON's sha256, every image (and mask) file's size
    and modification time, the size, the strip cut and whether masks are included, so a rewritten
    world or another cut is decoded afresh and never served stale pixels.
    """
    key = _cache_key(index, size, strip_fraction, masks)
    path = paths.cache_dir() / "targets" / f"{index.json_path.stem}-{size}px-{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    ds = cct.CCTDataset(index, None, size, return_mask=masks, strip_fraction=strip_fraction)
    if len(ds) != len(index.samples):
        raise RuntimeError(f"{index.json_path}: {len(index.samples) - len(ds)} generated frames "
                           f"are unreadable ({ds.bad_files[:1]}); delete the world's cache folder "
                           f"{index.json_path.parent} to generate it again")
    images = np.empty((len(ds), 3, size, size), np.uint8)
    mask_arr = np.empty((len(ds), 1, size, size), np.uint8) if masks else None
    for k in progress_bar(range(len(ds)), desc=f"decoding {index.json_path.stem} {size}px",
                          show=progress and len(ds) >= 500):
        item = ds[k]
        images[k] = _to_uint8_nchw(item[0]).numpy()
        if masks:
            mask_arr[k] = item[2].numpy().astype(np.uint8)
    out = {"images": images, "labels": ds.labels,
           "ids": np.array([str(i) for i, _ in ds.samples])}
    if masks:
        out["masks"] = mask_arr
    fileio.atomic_write_npz(path, out)
    return out


def world_json(name: str, profile: Profile, seed: int = 0) -> Path:
    """The COCO Camera Traps JSON a camera-trap stand-in (``syn_*`` but ``syn_cifar``) is read
    from, generated on first use: its world at the profile's size for it (:func:`_world`)."""
    world, n_images = _world(name, profile)
    return synthetic.camtrap_world(world, profile, seed=seed,
                                   **({} if n_images is None else {"n_images": n_images}))


def _world(name: str, profile: Profile) -> tuple:
    """The camera-trap world a ``syn_*`` stand-in is read from and its frames (None: the
    profile's size for that world): a family target is :func:`synthetic.family_spec` at its
    distance with ``profile.family_images`` frames."""
    distance = family_distance(name)
    if distance is None:
        return name.removeprefix("syn_"), None
    _require(profile.family_images, "family_images", name, profile)
    return synthetic.family_spec(distance), profile.family_images


EXTRA_STREAM = 2  # the random stream of the extra validation frames (the pool draws stream 1)


@dataclass
class ExtraValidation:
    """The extra validation frames of a stand-in (:func:`extra_validation`): ``index`` labels
    exactly the frames used, ``image_ids`` are those frames in file order (a frame showing two
    species has no label in ``index`` but its boxes serve the crop view), ``identity`` is what
    the target's identity records under ``"extra_validation"``."""
    index: cct.CCTIndex
    image_ids: list
    identity: dict


def _usable_frames(seqs: list, classes: set) -> int:
    """Frames of planned sequences that the reader labels with one of ``classes``
    (``multi_label="single"`` leaves out the frames of a sequence showing two species: every one
    of them names both)."""
    return sum(s.n_frames for s in seqs
               if len({i.species for i in s.individuals}) <= 1 and s.label in classes)


def extra_validation(name: str, profile: str | Profile, index: cct.CCTIndex, parts: splits.Split,
                     seed: int = 0) -> ExtraValidation | None:
    """The frames that bring the validation split of stand-in ``name`` (``index`` split into
    ``parts``) to ``profile.validation_frames(name)`` frames in all, or None (no number asked
    for, or the split already holds that many).

    They are drawn from the same world (the family's spec at a family distance) as other
    sequences (random stream :data:`EXTRA_STREAM`) at the split's own validation sites only, so
    the sites, the training frames and the in-domain pool (:func:`camtrap_pool`, stream 1 at the
    other sites) stay as they are, and the extra frames share no site with training. Their names
    carry the stream's tag (``x2_``), so ids, files and sequences never collide with the
    world's own. A frame is used when the reader labels it with one of the target's classes (a
    class the world's own frames lack, possible in a tiny world, cannot be scored); the world is
    planned just large enough for that (frames showing two species are not labelled either),
    and its first such frames in file order are used, exactly the number missing.
    """
    profile = get_profile(profile)
    wanted = profile.validation_frames(name)
    if wanted is None:
        return None
    val = set(parts.val)
    needed = int(wanted) - sum(1 for iid, _ in index.samples if iid in val)
    if needed <= 0:
        return None
    world, _ = _world(name, profile)
    spec = synthetic.CAMTRAP_SPECS[world] if isinstance(world, str) else world
    held = {index.images[i].get("location") for i in parts.val}
    sites = tuple(s for s in spec.site_names if s in held)
    classes = set(index.class_names)
    n = needed
    for _ in range(50):  # cheap: plans only, no pixels
        have = _usable_frames(synthetic.plan_sequences(
            world, profile, seed, n_images=n, stream=EXTRA_STREAM, sites=sites), classes)
        if have >= needed:
            break
        n += needed - have
    json_path = synthetic.camtrap_world(world, profile, seed=seed, n_images=n,
                                        stream=EXTRA_STREAM, sites=sites)
    extra = cct.load_cct(json_path)
    if extra.categories != index.categories:
        raise RuntimeError(f"{json_path}: its categories {extra.categories} differ from those of "
                           f"{index.json_path} ({index.categories}); the extra validation frames "
                           "cannot be labelled with the target's classes")
    label = {iid: extra.categories[c] for iid, c in extra.samples}
    kept, k, other = [], 0, 0
    for iid in extra.images:  # file order
        if k == needed:
            break
        if iid in label and label[iid] not in classes:
            other += 1
            continue
        kept.append(iid)
        k += iid in label
    if k < needed:
        raise RuntimeError(f"{json_path}: {k} usable labelled frames, {needed} needed for "
                           f"val_images={wanted} of {name!r}")
    keep = set(kept)
    used = extra.with_samples([s for s in extra.samples if s[0] in keep])
    return ExtraValidation(used, kept, {
        "n_images": len(used.samples), "json_sha256": extra.json_sha256, "stream": EXTRA_STREAM,
        "sites": list(sites), "generated": n, "frames_of_classes_the_target_lacks": other,
        "json": str(json_path)})


def append_rows(a: ArrayDataset, b: ArrayDataset) -> ArrayDataset:
    """``a``'s rows followed by ``b``'s: images, labels, masks and every per-row record the
    readers attach (``ids``, ``sequence_ids``, ``locations``; the crop view's ``image_ids``,
    ``boxes``, ``box_conf``); a record one side lacks is None."""
    masks = None if a.masks is None or b.masks is None else torch.cat([a.masks, b.masks])
    out = ArrayDataset(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]), masks)
    for attr in ("ids", "sequence_ids", "locations", "box_conf"):
        if hasattr(a, attr) or hasattr(b, attr):
            x, y = getattr(a, attr, None), getattr(b, attr, None)
            setattr(out, attr, None if x is None or y is None else np.concatenate([x, y]))
    for attr in ("image_ids", "boxes"):
        if hasattr(a, attr) or hasattr(b, attr):
            x, y = getattr(a, attr, None), getattr(b, attr, None)
            setattr(out, attr, None if x is None or y is None else list(x) + list(y))
    return out


def load_target(name: str, profile: str | Profile = DEFAULT_PROFILE, seed: int = 0, masks: bool = False,
                progress: bool = True, strip_fraction: float | None = None) -> Target:
    """The named fine-tuning target at the profile's stored size, generated on first use.
    ``strip_fraction``: rows cut from each camera-trap frame's bottom (None: exactly the world's
    drawn strip, :func:`world_strip_fraction`).

    A camera-trap stand-in is split by location; where the profile asks for more validation
    frames (``profile.validation_frames(name)``), its validation set is the split's own
    validation frames followed by the extra ones of :func:`extra_validation` (same sites,
    another random stream), recorded under ``identity["extra_validation"]``; the training set
    is the same either way."""
    profile = get_profile(profile)
    if name not in TARGETS:
        raise ValueError(f"target={name!r}; allowed: {list(TARGETS)}")
    size = profile.resize_size
    if name == "syn_cifar":
        world = synthetic.similar_world(profile, seed=seed)
        return Target(name,
                      ArrayDataset(_resize_uint8(world.images_train, size), torch.from_numpy(world.labels_train)),
                      ArrayDataset(_resize_uint8(world.images_val, size), torch.from_numpy(world.labels_val)),
                      list(world.classes), {"world": "similar", "profile": profile.name, "seed": seed})
    distance = family_distance(name)
    index = cct.load_cct(world_json(name, profile, seed))
    parts = splits.split(index, by="location", val_fraction=VAL_FRACTION, seed=seed)
    fraction = world_strip_fraction(profile) if strip_fraction is None else strip_fraction
    data = decoded_samples(index, size, fraction, masks, progress)
    sets = []
    for ids in (parts.train, parts.val):
        wanted = set(ids)
        rows = torch.tensor([k for k, (iid, _) in enumerate(index.samples) if iid in wanted])
        m = torch.from_numpy(data["masks"][rows.numpy()]).float() if masks else None
        ds = ArrayDataset(torch.from_numpy(data["images"][rows.numpy()]),
                          torch.from_numpy(data["labels"][rows.numpy()]), m)
        cct.attach_provenance(ds, index, [index.samples[k][0] for k in rows.tolist()])
        sets.append(ds)
    extra = extra_validation(name, profile, index, parts, seed)
    if extra is not None:
        more = decoded_samples(extra.index, size, fraction, masks, progress)
        labels = torch.tensor([index.label_of[c] for _, c in extra.index.samples], dtype=torch.long)
        ds = ArrayDataset(torch.from_numpy(more["images"]), labels.to(sets[1].labels.dtype),
                          torch.from_numpy(more["masks"]).float() if masks else None)
        cct.attach_provenance(ds, extra.index, [iid for iid, _ in extra.index.samples])
        sets[1] = append_rows(sets[1], ds)
    return Target(name, sets[0], sets[1], list(index.class_names),
                  {"json": str(index.json_path), "json_sha256": index.json_sha256, "split": parts.by,
                   "strip": strip.describe(fraction, profile.camtrap_size[1]),
                   "size": size, "profile": profile.name, "seed": seed,
                   **({} if distance is None else
                      {"distance": distance,
                       "difficulty": synthetic.family_spec(distance).difficulty()}),
                   **({} if extra is None else {"extra_validation": extra.identity})})


VAL_FRACTION = 0.25  # share of the camera-trap stand-ins' frames in validation (by location)


def _require(n: int, field: str, what: str, profile: Profile) -> None:
    if n < 1:
        raise ValueError(f"profile {profile.name!r} has {field}={n}: {what} needs the embedded "
                         "world (profiles 'tiny' and 'demo')")


def validation_sites(profile: str | Profile = DEFAULT_PROFILE, seed: int = 0) -> list[str]:
    """The camera sites in the validation split of the Serengeti stand-in or of any distance of
    the domain-distance family (``load_target``'s location splits; the family shares one plan,
    hence one split, at every distance)."""
    profile = get_profile(profile)
    worlds = [synthetic.camtrap_world("serengeti", profile, seed=seed)]
    if profile.family_images > 0:
        worlds.append(synthetic.camtrap_world(synthetic.family_spec(0), profile, seed=seed,
                                              n_images=profile.family_images))
    sites = set()
    for path in worlds:
        index = cct.load_cct(path)
        parts = splits.split(index, by="location", val_fraction=VAL_FRACTION, seed=seed)
        sites |= {index.images[i].get("location") for i in parts.val}
    return sorted(sites)


def camtrap_pool(profile: str | Profile = DEFAULT_PROFILE, seed: int = 0,
                 progress: bool = True) -> tuple[np.ndarray, dict]:
    """Unlabelled camera-trap frames for in-domain self-supervised pretraining: uint8 NHWC
    images at ``profile.input_size`` and their identity.

    ``profile.pool_images`` frames of the Serengeti stand-in's world, drawn as other sequences
    (random stream 1) at camera sites that are in no validation split (neither the stand-in's nor
    the domain-distance family's, :func:`validation_sites`), so the pool shares no camera site,
    hence no background, with any validation split a backbone pretrained on it is scored on. Read
    as the target is (strip cut, squashed to the input size); labels are discarded.
    """
    profile = get_profile(profile)
    _require(profile.pool_images, "pool_images", "the in-domain pool", profile)
    index = cct.load_cct(synthetic.camtrap_world("serengeti", profile, seed=seed))
    held_out = set(validation_sites(profile, seed))
    sites = tuple(s for s in synthetic.CAMTRAP_SPECS["serengeti"].site_names
                  if s in {im.get("location") for im in index.images.values()} and s not in held_out)
    json_path = synthetic.camtrap_world("serengeti", profile, seed=seed,
                                        n_images=profile.pool_images, stream=1, sites=sites)
    pool = cct.load_cct(json_path)
    data = decoded_samples(pool, profile.input_size, world_strip_fraction(profile), progress=progress)
    images = np.ascontiguousarray(data["images"].transpose(0, 2, 3, 1))
    return images, {"world": "serengeti pool", "profile": profile.name, "seed": seed,
                    "stream": 1, "sites": list(sites), "excluded_validation_sites": sorted(held_out),
                    "n_images": int(len(images)), "json_sha256": pool.json_sha256}
