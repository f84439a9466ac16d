"""How close does the demo's fine-tuning step come to what this CPU can multiply?

Counts the FLOPs of one image's forward + backward through the demo network at 64 px
(``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products, the work that
matters), times the bare channels_last fine-tuning step (forward, backward, Adam step) in fp32 and
under bf16 autocast, and sets its GFLOP/s beside a 1024^3 matrix product's in the same precision
on the same thread(s): the step's share of the matmul "peak". Then the ``finetune()`` loop against
the bare step, with ``bench_finetune``'s own functions. One thread (``torch.set_num_threads(1)``)
and all threads, printed side by side in one run; wall clock and process CPU time, since a shared
machine inflates the first.

    python benchmarks/bench_roofline.py [--batches 8] [--repeats 3] [--size 64]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import _cpu_batches, bare, compare, step_arguments  # noqa: E402

from camtrap_ssl.models import create_model  # noqa: E402
from camtrap_ssl.models.utils import cpu_has_native_bf16  # noqa: E402
from camtrap_ssl.studies.budget import cpu_model  # noqa: E402


def flops_per_image(arch: str, size: int, classes: int = 10, batch: int = 8) -> dict:
    """FLOPs of one image's forward and of forward + backward (FlopCounterMode counts a
    multiply-add as 2)."""
    model = create_model(arch, num_classes=classes).train()
    x = torch.rand(batch, 3, size, size)
    y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model(x)
    with FlopCounterMode(display=False) as both:
        F.cross_entropy(model(x), y).backward()
    return {"forward": fwd.get_total_flops() / batch, "train": both.get_total_flops() / batch}


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> tuple[float, float]:
    """(wall, CPU-time) GFLOP/s of an n^3 matrix product (2 n^3 FLOPs), best of ``repeats``."""
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    a @ b  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 2 * n ** 3 / min(wall) / 1e9, 2 * n ** 3 / min(cpu) / 1e9


def step_ips(arch, size, batch_size, n_batches, precision, repeats) -> tuple[float, float]:
    """(wall, CPU-time) images/s of the bare channels_last step, best of ``repeats`` after a warm-up."""
    base, batches, n = _cpu_batches(arch, size, batch_size, n_batches, 10)
    cpu = torch.device("cpu")
    bare(copy.deepcopy(base), batches[:1], cpu, False, precision=precision)  # warm-up
    times = [bare(copy.deepcopy(base), batches, cpu, False, precision=precision)
             for _ in range(repeats)]
    return n / min(t[0] for t in times), n / min(t[1] for t in times)


def measure(args, threads: int) -> dict:
    torch.set_num_threads(threads)
    out = {}
    for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out[prec] = {"step": step_ips(args.arch, args.size, args.batch_size, args.batches, prec,
                                      args.repeats),
                     "matmul": matmul_gflops(dtype)}
    out["loop"] = compare(args.arch, args.size, args.batch_size, args.batches, args.val, 10,
                          "cpu", 0, args.repeats)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    step_arguments(p, batches=8)
    args = p.parse_args(argv)

    all_threads = torch.get_num_threads()
    fl = flops_per_image(args.arch, args.size)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, native bf16: "
          f"{'yes' if cpu_has_native_bf16() else 'no'} (amx_bf16/avx512_bf16 flags), "
          f"torch {torch.__version__}, load average {load:.1f} at start")
    print(f"{args.arch} at {args.size} px: {fl['forward'] / 1e6:.1f} MFLOP forward, "
          f"{fl['train'] / 1e6:.1f} MFLOP forward + backward per image (FlopCounterMode)")
    results = {t: measure(args, t) for t in dict.fromkeys((1, all_threads))}
    cols = list(results)
    head = "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>30s}" for t in cols)
    print(f"\n{'(wall / process CPU time)':42s}{head}")

    def row(label, fmt):
        print(f"  {label:40s}" + "".join(f"{fmt(results[t]):>30s}" for t in cols))

    for prec in ("fp32", "bf16"):
        row(f"bare step {prec}, img/s",
            lambda r: f"{r[prec]['step'][0]:.0f} / {r[prec]['step'][1]:.0f}")
        row(f"bare step {prec}, GFLOP/s",
            lambda r: f"{r[prec]['step'][0] * fl['train'] / 1e9:.1f} / "
                      f"{r[prec]['step'][1] * fl['train'] / 1e9:.1f}")
        row(f"1024^3 matmul {prec}, GFLOP/s",
            lambda r: f"{r[prec]['matmul'][0]:.1f} / {r[prec]['matmul'][1]:.1f}")
        row(f"step / matmul {prec}",
            lambda r: f"{r[prec]['step'][0] * fl['train'] / 1e9 / r[prec]['matmul'][0]:.0%} / "
                      f"{r[prec]['step'][1] * fl['train'] / 1e9 / r[prec]['matmul'][1]:.0%}")
    row("bare step bf16 / fp32",
        lambda r: f"{r['bf16']['step'][0] / r['fp32']['step'][0]:.2f} / "
                  f"{r['bf16']['step'][1] / r['fp32']['step'][1]:.2f}")
    row("finetune() loop, img/s (auto precision)",
        lambda r: f"{r['loop']['loop_ips']:.0f} / {r['loop']['cpu_loop_ips']:.0f}")
    row("finetune() loop / bare step (auto)",
        lambda r: f"{r['loop']['ratio']:.2f} / {r['loop']['cpu_ratio']:.2f}")
    print(f"(load average {os.getloadavg()[0]:.1f} at the end; CPU-time figures are what to read "
          "on a shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
