"""Images per second: the prepared cache vs decoding the original JPEGs, same images, one core.

Camera-trap frames are multi-megapixel JPEGs (Serengeti: 2048 x 1536) and fine-tuning reads each
25-50 times, so decoding once (``camtrap_ssl.data.prepare``) should pay off by a wide margin; the target
is at least 3x per core. Both sides run in this one process with one torch thread and one decode
thread. By default the JPEGs are fabricated (smooth scene + sensor noise, so their size and
decode cost resemble real frames) in a temporary folder; ``--samples DIR`` uses real JPEGs
instead, e.g. ``../shared/data/serengeti-samples`` (small gallery copies, about 409 x 307).

    python benchmarks/bench_prepare.py [--n 16] [--size 224] [--samples DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from camtrap_ssl.data.cct import CCTDataset, load_cct
from camtrap_ssl.data.prepare import prepare


def fabricate(root: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for k in range(n):
        coarse = rng.integers(30, 220, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
        scene = np.asarray(Image.fromarray(coarse).resize((width, height),
                                                          Image.Resampling.BICUBIC))
        noisy = np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8)
        fname = f"S1/B04/B04_R1/S1_B04_R1_PICT{k:04d}.JPG"
        (root / fname).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy).save(root / fname, quality=90)
        images.append({"id": k, "file_name": fname, "width": width, "height": height,
                       "location": "B04", "seq_id": f"s{k}"})
        anns.append({"id": k, "image_id": k, "category_id": 1})
    path = root / "bench.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "zebra"}]}))
    return path


def from_folder(root: Path, folder: Path) -> Path:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"--samples {folder}: no JPEG files there")
    path = root / "bench.json"
    path.write_text(json.dumps({
        "images": [{"id": k, "file_name": f.name, "seq_id": f"s{k}"} for k, f in enumerate(files)],
        "annotations": [{"id": k, "image_id": k, "category_id": 1} for k in range(len(files))],
        "categories": [{"id": 1, "name": "animal"}]}))
    return path


def images_per_second(dataset, min_seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for k in range(len(dataset)):
            dataset[k]
        n += len(dataset)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="fabricated images")
    ap.add_argument("--size", type=int, default=224, help="training resolution")
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1536)
    ap.add_argument("--samples", type=Path, default=None, help="folder of real JPEGs to use")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.samples is not None:
            json_path, image_root = from_folder(tmp, args.samples), args.samples
            source = f"{args.samples}"
        else:
            json_path, image_root = fabricate(tmp, args.n, args.width, args.height), None
            source = f"fabricated {args.width}x{args.height} JPEGs"
        index = load_cct(json_path, image_root=image_root)
        mb = sum(index.path_of(i).stat().st_size for i in index.image_ids) / len(index) / 1e6
        original = CCTDataset(index, None, size=args.size)
        t0 = time.perf_counter()
        cached = prepare(index, None, size=args.size, out_dir=tmp / "cache", workers=1,
                         progress=False)
        prep_s = time.perf_counter() - t0
        decode_ips = images_per_second(original)
        cache_ips = images_per_second(cached)
    print(f"source: {len(index)} {source} (mean {mb:.2f} MB), output {args.size}x{args.size}, "
          "1 thread")
    print(f"{'pipeline':<28}{'images/s':>12}")
    print(f"{'CCTDataset (decode JPEG)':<28}{decode_ips:>12.1f}")
    print(f"{'PreparedDataset (cache)':<28}{cache_ips:>12.1f}")
    print(f"speed-up: {cache_ips / decode_ips:.1f}x (target >= 3x); preparing took "
          f"{prep_s:.2f} s ({len(index) / prep_s:.1f} images/s, paid once)")


if __name__ == "__main__":
    main()
