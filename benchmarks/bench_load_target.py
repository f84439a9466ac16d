"""Seconds per ``load_target`` call: decoding the camera-trap JPEGs every call vs the decoded cache.

Before the cache, every ``camtrap_ssl.data.embedded.load_target("syn_serengeti", ...)`` decoded
every JPEG of the world again (each notebook, each study, each fine-tuning cell of the book).
Now the first call decodes once and writes the uint8 arrays under ``<cache>/targets``; every
later call reads that file. This script times, side by side in one process with one torch
thread: the old path (decode all frames into arrays, as ``load_target`` did), the first call with
an empty decoded cache (decode + write) and the second call (read), and prints the ratios. The
world itself is generated (or taken from the cache) before any timing.

    python benchmarks/bench_load_target.py [--profile demo] [--target syn_serengeti] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import torch

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data import cct, embedded, splits, synthetic


def decode_every_call(name: str, profile) -> int:
    """The old ``load_target``: every frame decoded into float, quantized back, per call."""
    index = cct.load_cct(synthetic.camtrap_world(name.removeprefix("syn_"), profile))
    parts = splits.split(index, by="location", val_fraction=0.25, seed=0)
    n = 0
    for ids in (parts.train, parts.val):
        ds = cct.CCTDataset(index, ids, profile.resize_size,
                            strip_fraction=embedded.world_strip_fraction(profile))
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        n += len((x * 255).round().to(torch.uint8))
    return n


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--target", default="syn_serengeti", choices=["syn_serengeti", "syn_ena24"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile = get_profile(args.profile)
    world = synthetic.camtrap_world(args.target.removeprefix("syn_"), profile).parent  # not timed
    # the decoded cache goes to a temporary folder; the world is linked into it, not regenerated
    tmp = tempfile.mkdtemp(prefix="bench_load_target_")
    os.symlink(world, os.path.join(tmp, world.name))
    os.environ["CAMTRAP_SSL_CACHE"] = tmp
    try:
        n = decode_every_call(args.target, profile)
        old = best_of(lambda: decode_every_call(args.target, profile), args.repeat)

        def first():
            shutil.rmtree(os.path.join(tmp, "targets"), ignore_errors=True)
            embedded.load_target(args.target, profile, progress=False)

        cold = best_of(first, args.repeat)
        warm = best_of(lambda: embedded.load_target(args.target, profile, progress=False), args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.target} at profile {profile.name}: {n} frames of {profile.camtrap_size[0]} x "
          f"{profile.camtrap_size[1]} -> {profile.resize_size} px, best of {args.repeat}, 1 thread")
    print(f"  decode every call (before)   {old:8.3f} s   1.00x")
    print(f"  first call (decode + write)  {cold:8.3f} s   {old / cold:5.2f}x")
    print(f"  second call (read the cache) {warm:8.3f} s   {old / warm:5.2f}x")


if __name__ == "__main__":
    main()
