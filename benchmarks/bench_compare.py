"""Seconds of ``camtrap-ssl compare`` on a 2,000-image camera-trap target: first run, second run
(features cached), the HTML render beside them, and the paper profile's cost per 1,000 images.

The target is a COCO Camera Traps file of 2,000 generated frames of the embedded Serengeti
stand-in (``synthetic.camtrap_world("serengeti", "demo", n_images=2000)``, written before any
timing), given to ``compare`` by its path as a team would give its own. Both runs compare the five
shipped demo backbones with a linear probe and k-NN at three label shares and three seeds, in a
fresh cache, so the first run pays what a team's first run pays (decoding the frames once,
extracting every backbone's features) and the second reads the feature cache. Targets: the first
run within 5 minutes on 2 CPU cores; the second at most a tenth of the first, both without the
HTML render, whose time is printed beside.

The paper-profile figure is a ResNet-50 forward pass at 224 px (the study's checkpoints are
ResNet-50s and -152s) timed on a few images in fp32, the precision features are extracted in,
and extrapolated to 1,000 images; the CPU is named from ``lscpu``.

    python benchmarks/bench_compare.py [--images 2000] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache and report")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_compare_")
    os.environ["CAMTRAP_SSL_CACHE"] = os.path.join(tmp, "cache")  # before camtrap_ssl reads it
    os.environ["CAMTRAP_SSL_RUNS"] = os.path.join(tmp, "runs")
    import torch

    from camtrap_ssl.data import synthetic
    from camtrap_ssl.experiments import compare
    from camtrap_ssl.models import create_model
    from camtrap_ssl.studies.budget import cpu_model

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU: {cpu_model()}; {cores} cores available, torch threads {torch.get_num_threads()}; "
          "precision fp32")
    t0 = time.perf_counter()
    target = synthetic.camtrap_world("serengeti", "demo", n_images=args.images)
    print(f"target: {target} ({args.images} generated frames, written in "
          f"{time.perf_counter() - t0:.0f} s, not timed below)")
    runs = []
    for k in range(2):
        plan = compare.plan_compare(str(target), profile="demo", out=os.path.join(tmp, f"out{k}"),
                                    runs_root=os.path.join(tmp, "runs"), min_images=6)
        t0 = time.perf_counter()
        res = compare.run_compare(plan, progress=False, echo=print if k == 0 else (lambda *a: None))
        wall = time.perf_counter() - t0
        runs.append((wall - res.seconds.get("render", 0.0), res.seconds))
        print(f"run {k + 1}: {runs[-1][0]:.1f} s without the HTML render (features "
              f"{res.seconds['features']:.1f} s, probes {res.seconds['probes']:.1f} s; estimate "
              f"{res.seconds['estimate']:.0f} s), render {res.seconds.get('render', 0):.1f} s; "
              f"{len(res.runs)} runs")
    first, second = runs[0][0], runs[1][0]
    print(f"first run {first:.1f} s ({'within' if first <= 300 else 'OVER'} the 5-minute target); "
          f"second {second:.1f} s = {second / first:.3f} of the first "
          f"({'within' if second <= first / 10 else 'OVER'} the one-tenth target)")
    # the paper profile: ResNet-50 at 224 px, fp32, a few images, extrapolated
    model = create_model("resnet50", num_classes=None).eval()
    x = torch.rand(8, 3, 224, 224)
    with torch.no_grad():
        model.forward_features(x[:2])
        t0 = time.perf_counter()
        model.forward_features(x)
    per = (time.perf_counter() - t0) / len(x)
    print(f"paper profile: ResNet-50 forward at 224 px, fp32: {per * 1000:.0f} ms per image, "
          f"{per * 1000 / 60:.1f} min of features per 1,000 images per backbone on this CPU "
          f"({per * 1000 * 12 / 60:.0f} min for the study's 12 checkpoints, R152s counted as R50s)")
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
