"""Score-CAM: batched over channels (camtrap_ssl.analysis.attribution.scorecam) vs one forward pass per
channel (scorecam_reference), timed side by side in one run on the same model and image.

    .venv/bin/python benchmarks/bench_scorecam.py [--arch resnet18_w025] [--size 64]
        [--batch-size 64] [--repeats 3] [--device cpu] [--variant authors]

Uses the demo profile's architecture from camtrap_ssl.models when available (random weights;
timing does not depend on training), else torchvision's resnet18.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from camtrap_ssl.analysis.attribution import (
    SCORECAM_VARIANTS,
    scorecam,
    scorecam_reference,
)

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "serengeti-samples"


def build_model(arch: str, num_classes: int = 10):
    try:
        from camtrap_ssl.models import create_model

        return create_model(arch, num_classes=num_classes), arch
    except (ImportError, ValueError, KeyError) as err:
        from torchvision.models import resnet18

        print(f"camtrap_ssl.models could not build {arch!r} ({err}); using torchvision resnet18")
        return resnet18(num_classes=num_classes), "torchvision resnet18"


def one_image(size: int) -> torch.Tensor:
    if SAMPLES.is_dir():
        from camtrap_ssl.data.images import load_image_folder

        return load_image_folder(SAMPLES, size, limit=1)[0]
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18_w025")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--study4", action="store_true",
                    help="also execute the whole Study 4 notebook on the demo profile and time it")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variant", default="authors", choices=SCORECAM_VARIANTS)
    args = ap.parse_args()

    torch.manual_seed(0)
    model, name = build_model(args.arch)
    model = model.to(args.device).eval()
    x = one_image(args.size).to(args.device)
    with torch.no_grad():
        acts = {}
        h = model.get_submodule(args.layer).register_forward_hook(
            lambda m, i, o: acts.__setitem__("a", o))
        target = int(model(x).argmax(1))
        h.remove()
    a = acts["a"][0]
    live = int(((a.flatten(1).amax(1) - a.flatten(1).amin(1)) > 1e-12).sum())

    def fast():
        return scorecam(model, x, target, layer=args.layer, batch_size=args.batch_size,
                        variant=args.variant)

    def slow():
        return scorecam_reference(model, x, target, layer=args.layer, variant=args.variant)

    fast(), slow()  # warm-up (allocator, oneDNN / cuDNN kernel choice)
    t_fast, t_slow = best_time(fast, args.repeats), best_time(slow, args.repeats)
    diff = float((fast() - slow()).abs().max())
    print(f"model {name}, input {args.size} px, {args.layer}: {a.shape[0]} channels "
          f"({live} non-constant) at {tuple(a.shape[1:])}, device {args.device}, "
          f"threads {torch.get_num_threads()}, variant {args.variant}")
    best = f"(best of {args.repeats})"
    print(f"batched (batch_size={args.batch_size}): {t_fast * 1e3:8.1f} ms  {best}")
    print(f"reference, one pass per channel:  {t_slow * 1e3:8.1f} ms  {best}")
    print(f"speed-up reference / batched:     {t_slow / t_fast:8.2f} x   "
          f"max |difference| {diff:.2e}")
    study4_time(args.study4)


def study4_time(run: bool) -> None:
    """The whole Study 4 notebook on the demo profile: as recorded by the last book build, or
    executed now with ``--study4`` (it reuses the fine-tuning runs of Studies 1 and 2)."""
    import json
    import tempfile
    import time
    from pathlib import Path

    record = Path(__file__).resolve().parent.parent / "book" / "studies" / "build_record.json"
    if run:
        from camtrap_ssl.studies.params import execute_study
        t0 = time.time()
        execute_study("4", tempfile.mkdtemp(), progress=False, profile="demo")
        print(f"Study 4 notebook, demo profile, executed now: {time.time() - t0:8.1f} s")
    elif record.exists():
        rec = json.loads(record.read_text())
        seconds = rec["seconds"].get("study4_reasoning.ipynb")
        print(f"Study 4 notebook, {rec['profile']} profile, last book build: {seconds:8.1f} s "
              f"(code {rec['code_version'][:12]})")
    else:
        print("Study 4 notebook time: no book build recorded yet (make book), or pass --study4")


if __name__ == "__main__":
    main()
