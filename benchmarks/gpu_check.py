"""One unattended pass over everything the paper path needs a GPU for; all figures in one JSON file.

Why one script: a session lent a GPU gets about 15 minutes of it, once. This measures, in that
window and without anyone watching, what book/reproduce.md's paper-scale walkthrough can only
estimate:

* ``finetune``: ResNet-50 fine-tuning at 224 px through the project's own ``finetune()`` loop (bf16
  autocast and channels_last on CUDA) and a bare forward/backward/step loop beside it, in
  images/s, and the implied minutes per Snapshot Serengeti epoch (757,000 images, 90 % of them
  trained on) against the study's ~120 min on two V100s;
* ``scorecam`` and ``featvis``: Study 4's Score-CAM over layer4's 2,048 channels and a lucent
  feature visualisation, on the device, seconds per image / per render;
* ``ddp``: DistributedDataParallel over every GPU present (nccl), images/s in total;
* peak device memory of each section.

Each section runs under ``try`` and is written to the JSON as soon as it ends, so a failure or
the hard time limit (``--time-limit``, a watchdog that writes what exists and exits) loses only
the section it interrupted. ``--smoke`` shrinks every section to seconds on CPU (gloo instead of
nccl, a tiny network at 32 px): that is what the test suite runs, to keep the script working where
no GPU is.

    python benchmarks/gpu_check.py --out gpu_check.json            # on the lent GPU
    python benchmarks/gpu_check.py --smoke --out /tmp/smoke.json   # anywhere, in seconds
"""
from __future__ import annotations

import argparse
import copy
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import SERENGETI_IMAGES, TRAIN_SHARE, compare  # noqa: E402

from camtrap_ssl.analysis import attribution, featvis  # noqa: E402
from camtrap_ssl.core import fileio, provenance  # noqa: E402
from camtrap_ssl.models import create_model  # noqa: E402

STUDY_EPOCH_MINUTES = 120  # SPEC section 4: about 120 min per Serengeti epoch on 2 V100 GPUs
STUDY_GPUS = 2

FULL = {"arch": "supervised_r50", "size": 224, "batch_size": 128, "batches": 20, "val": 256,
        "classes": 48, "workers": 8, "scorecam_images": 4, "featvis_steps": 128, "ddp_steps": 20,
        "device": "cuda", "backend": "nccl"}
SMOKE = {"arch": "resnet10_w0125", "size": 32, "batch_size": 4, "batches": 2, "val": 4,
         "classes": 3, "workers": 0, "scorecam_images": 1, "featvis_steps": 2, "ddp_steps": 2,
         "device": "cpu", "backend": "gloo"}


class Report:
    """The JSON file, rewritten atomically after every section."""

    def __init__(self, path: Path, settings: dict, smoke: bool):
        self.path = path
        self.lock = threading.Lock()
        self.data = {"smoke": smoke, "settings": settings, "environment": provenance.environment(),
                     "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                     "sections": {}, "finished": False}
        self.write()

    def write(self):
        with self.lock:
            fileio.atomic_write_json(self.path, self.data)

    def section(self, name: str, fn, cfg: dict):
        cuda = cfg["device"] == "cuda"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        self.data["sections"][name] = {"ok": None, "running": True}
        self.write()
        try:
            out = {"ok": True, **fn(cfg)}
        except Exception as e:  # one section's failure must not lose the others
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000],
                   "traceback": traceback.format_exc()[-4000:]}
        out["seconds"] = round(time.perf_counter() - t0, 2)
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if cuda else None
        self.data["sections"][name] = out
        self.write()
        print(f"[gpu_check] {name}: {'ok' if out['ok'] else out['error']} ({out['seconds']} s)",
              flush=True)


def _model(cfg, classes=None):
    torch.manual_seed(0)
    return create_model(cfg["arch"], num_classes=classes or cfg["classes"])


def finetune_section(cfg: dict) -> dict:
    r = compare(cfg["arch"], cfg["size"], cfg["batch_size"], cfg["batches"], cfg["val"],
                cfg["classes"], cfg["device"], cfg["workers"], repeats=1)
    minutes = SERENGETI_IMAGES * TRAIN_SHARE / r["loop_ips"] / 60
    return {"images_per_s": r["loop_ips"], "bare_images_per_s": r["bare_ips"],
            "loop_over_bare": r["ratio"], "images": r["images"],
            "precision": "bf16 autocast, channels_last" if cfg["device"] == "cuda" else "fp32",
            "serengeti_epoch_minutes": minutes,
            "study_epoch_minutes": STUDY_EPOCH_MINUTES, "study_gpus": STUDY_GPUS,
            "study_minutes_over_ours": STUDY_EPOCH_MINUTES / minutes}  # one device here, two V100s there


def scorecam_section(cfg: dict) -> dict:
    dev = torch.device(cfg["device"])
    model = _model(cfg).to(dev).eval()
    x = torch.rand(cfg["scorecam_images"], 3, cfg["size"], cfg["size"], device=dev)
    attribution.attribute(model, x[:1], 0, "scorecam")  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    maps = attribution.attribute(model, x, 0, "scorecam", batch_size=cfg["batch_size"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    s = time.perf_counter() - t0
    return {"seconds_per_image": s / len(x), "images": len(x), "map_shape": list(maps.shape),
            "map_device": str(maps.device), "finite": bool(torch.isfinite(maps).all())}


def featvis_section(cfg: dict) -> dict:
    dev = torch.device(cfg["device"])
    model = _model(cfg).to(dev).eval()
    t0 = time.perf_counter()
    out = featvis.visualize(model, "channel", "layer3", 0, size=cfg["size"], steps=cfg["featvis_steps"])
    s = time.perf_counter() - t0
    image = getattr(out, "image", None)
    return {"seconds_per_render": s, "steps": cfg["featvis_steps"],
            "image_shape": list(image.shape) if image is not None else None}


def _ddp_worker(rank: int, world: int, cfg: dict, port: int, queue):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.distributed.init_process_group(cfg["backend"], rank=rank, world_size=world)
    try:
        cuda = cfg["device"] == "cuda"
        dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(dev)
        model = _model(cfg).to(dev, memory_format=torch.channels_last if cuda else torch.preserve_format)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if cuda else None)
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-5, weight_decay=5e-4)
        x = torch.rand(cfg["batch_size"], 3, cfg["size"], cfg["size"], device=dev)
        y = torch.randint(0, cfg["classes"], (cfg["batch_size"],), device=dev)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)

        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(ddp(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up: buckets, cuDNN autotuning
        if cuda:
            torch.cuda.synchronize()
        torch.distributed.barrier()
        t0 = time.perf_counter()
        for _ in range(cfg["ddp_steps"]):
            step()
        if cuda:
            torch.cuda.synchronize()
        torch.distributed.barrier()
        s = time.perf_counter() - t0
        queue.put((rank, s, torch.cuda.max_memory_allocated(dev) if cuda else None))
    finally:
        torch.distributed.destroy_process_group()


def ddp_section(cfg: dict) -> dict:
    world = torch.cuda.device_count() if cfg["device"] == "cuda" else 2
    if world < 1:
        raise RuntimeError("no CUDA device for DDP")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    torch.multiprocessing.start_processes(_ddp_worker, args=(world, cfg, port, queue), nprocs=world,
                                          join=True, start_method="spawn")
    results = sorted(queue.get(timeout=30) for _ in range(world))
    slowest = max(r[1] for r in results)
    ips = world * cfg["batch_size"] * cfg["ddp_steps"] / slowest
    return {"backend": cfg["backend"], "world_size": world, "images_per_s": ips,
            "serengeti_epoch_minutes": SERENGETI_IMAGES * TRAIN_SHARE / ips / 60,
            "per_rank_peak_memory_bytes": [r[2] for r in results]}


SECTIONS = {"finetune": finetune_section, "scorecam": scorecam_section,
            "featvis": featvis_section, "ddp": ddp_section}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    p.add_argument("--smoke", action="store_true", help="seconds on CPU: every section shrunk")
    p.add_argument("--time-limit", type=float, default=540.0,
                   help="hard limit in seconds for the whole check (default 540: 9 of the 15 minutes)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {list(SECTIONS)}")
    args = p.parse_args(argv)
    names = [s for s in args.sections.split(",") if s]
    bad = [s for s in names if s not in SECTIONS]
    if bad:
        p.error(f"--sections: {bad} unknown; allowed: {list(SECTIONS)}")
    if args.time_limit <= 0:
        p.error(f"--time-limit={args.time_limit} must be positive")
    cfg = dict(SMOKE if args.smoke else FULL)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; run with --smoke to check the script on CPU",
              file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(1)
    report = Report(args.out, cfg, args.smoke)

    def watchdog():  # the hard limit: keep what was measured, mark the section cut short
        report.data["timed_out_after_s"] = args.time_limit
        report.write()
        print(f"[gpu_check] time limit {args.time_limit} s reached; {args.out} keeps what ran",
              flush=True)
        os._exit(3)

    timer = threading.Timer(args.time_limit, watchdog)
    timer.daemon = True
    timer.start()
    for name in names:
        report.section(name, SECTIONS[name], copy.deepcopy(cfg))
    timer.cancel()
    report.data["finished"] = True
    report.write()
    print(f"[gpu_check] wrote {args.out}")
    return 0 if all(s["ok"] for s in report.data["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
