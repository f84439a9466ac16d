"""How much does the fine-tuning loop cost on top of the model's own forward/backward/step?

CPU section (always): ``finetune()`` over N batches (one epoch: loading, augmentation, training,
a small validation pass, metrics and checkpoint written to a temporary run directory) against a
bare ``forward + backward + Adam step`` loop over the same batches with the same model, printed
side by side with their ratio. Target: ratio >= 0.95. Runs alternate and the best of each is
kept, because shared machines are noisy.

GPU section (``--gpu``, where CUDA exists): ResNet-50 fine-tuning at 224 px (bf16 autocast,
channels_last) through ``finetune()`` and bare, in images/s, and the implied minutes per Snapshot
Serengeti epoch (757,000 images x 0.9 training share). The study reported about 120 minutes per
epoch on 2 V100s.

Precision section (always): the bare CPU step under bf16 autocast against fp32, side by side;
``finetune()``'s ``precision="auto"`` takes bf16 where the CPU has it natively because of this.

Memory-format section (always): the bare step on CPU with channels_last tensors against
contiguous (NCHW) ones, side by side in the same run; ``finetune()`` uses channels_last on every
device because of this comparison.

    python benchmarks/bench_finetune.py [--batches 16] [--gpu]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch
import torch.nn.functional as F

from camtrap_ssl.models import create_model
from camtrap_ssl.models.utils import autocast, resolve_precision
from camtrap_ssl.train.finetune import FinetuneConfig, finetune

SERENGETI_IMAGES = 757_000
TRAIN_SHARE = 0.9


class Uint8Dataset(torch.utils.data.Dataset):
    """Images kept as uint8 (as ArrayDataset / PreparedDataset do), served as float [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float().div_(255), self.labels[i]

    def get_batch(self, idx: torch.Tensor):
        """A whole batch in one indexing operation (finetune's batched read)."""
        return self.images[idx].float().div_(255), self.labels[idx]


def make_data(n: int, size: int, classes: int, seed: int = 0) -> Uint8Dataset:
    g = torch.Generator().manual_seed(seed)
    return Uint8Dataset(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                        torch.randint(0, classes, (n,), generator=g))


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) since ``t0``."""
    t1 = _clocks()
    return t1[0] - t0[0], t1[1] - t0[1]


def bare(model, batches, device, cuda: bool, lr: float = 1e-5,
         channels_last: bool = True, precision: str = "auto") -> tuple[float, float]:
    """(wall, CPU) seconds for forward + backward + step over ``batches`` (already in memory)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    if cuda:
        torch.cuda.synchronize()
    t0 = _clocks()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=fmt)
        with autocast(device, resolve_precision(precision, device)):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    return _since(t0)


def through_finetune(model, train, val, classes, batch_size, device: str,
                     workers: int) -> tuple[float, float]:
    # the demo's augmentation keeps the full size, so both sides train on the same pixels
    cfg = FinetuneConfig(epochs=1, batch_size=batch_size, lr=1e-5, device=device,
                         num_workers=workers, augmentation="demo")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = _clocks()
        finetune(model, train, val, [f"c{k}" for k in range(classes)], cfg, f"{tmp}/run",
                 progress=False)
        if device == "cuda":
            torch.cuda.synchronize()
        return _since(t0)


def compare(arch, size, batch_size, n_batches, n_val, classes, device, workers, repeats) -> dict:
    torch.manual_seed(0)
    base = create_model(arch, num_classes=classes)
    train = make_data(n_batches * batch_size, size, classes, seed=1)
    val = make_data(n_val, size, classes, seed=2)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    batches = [(torch.stack([train[i][0] for i in range(k, k + batch_size)]),
                train.labels[k:k + batch_size]) for k in range(0, len(train), batch_size)]
    if cuda:  # the bare loop times compute only: its batches already sit on the GPU
        batches = [(x.to(dev), y.to(dev)) for x, y in batches]
        bare(copy.deepcopy(base), batches[:3], dev, cuda)  # warm-up outside the timings
    t_bare, t_loop = [], []
    for _ in range(repeats):
        t_bare.append(bare(copy.deepcopy(base), batches, dev, cuda))
        t_loop.append(through_finetune(copy.deepcopy(base), train, val, classes, batch_size, device,
                                       workers))
    n = len(train)
    wall_b, wall_l = min(t[0] for t in t_bare), min(t[0] for t in t_loop)
    cpu_b, cpu_l = min(t[1] for t in t_bare), min(t[1] for t in t_loop)
    return {"bare_ips": n / wall_b, "loop_ips": n / wall_l, "ratio": wall_b / wall_l,
            "cpu_bare_ips": n / cpu_b, "cpu_loop_ips": n / cpu_l, "cpu_ratio": cpu_b / cpu_l,
            "images": n}


def _cpu_batches(arch, size, batch_size, n_batches, classes):
    """(model, in-memory batches, image count) for the side-by-side CPU step comparisons."""
    torch.manual_seed(0)
    base = create_model(arch, num_classes=classes)
    data = make_data(n_batches * batch_size, size, classes, seed=1)
    return base, [data.get_batch(torch.arange(k, k + batch_size))
                  for k in range(0, len(data), batch_size)], len(data)


def memory_formats(arch, size, batch_size, n_batches, classes, repeats) -> dict:
    """Images/s (wall, CPU time) of the bare CPU step, channels_last against contiguous, alternated."""
    base, batches, n = _cpu_batches(arch, size, batch_size, n_batches, classes)
    dev = torch.device("cpu")
    times = {True: [], False: []}
    for _ in range(repeats):
        for cl in (True, False):
            times[cl].append(bare(copy.deepcopy(base), batches, dev, False, channels_last=cl))
    return {("channels_last" if cl else "contiguous"):
            (n / min(t[0] for t in ts), n / min(t[1] for t in ts)) for cl, ts in times.items()}


def precisions(arch, size, batch_size, n_batches, classes, repeats) -> dict:
    """Images/s (wall, CPU time) of the bare CPU step in bf16 autocast against fp32, alternated
    (both channels_last). bf16 pays only where the CPU multiplies it natively (AMX, AVX512-BF16);
    ``precision="auto"`` picks it there and nowhere else."""
    base, batches, n = _cpu_batches(arch, size, batch_size, n_batches, classes)
    dev = torch.device("cpu")
    times = {"bf16": [], "fp32": []}
    for _ in range(repeats):
        for prec in times:
            times[prec].append(bare(copy.deepcopy(base), batches, dev, False, precision=prec))
    return {prec: (n / min(t[0] for t in ts), n / min(t[1] for t in ts)) for prec, ts in times.items()}


def step_arguments(p: argparse.ArgumentParser, batches: int) -> None:
    """The demo step's options, shared with ``bench_roofline.py``."""
    p.add_argument("--arch", default="resnet18_w025", help="default: the demo profile's")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=batches, help="training batches per measurement")
    p.add_argument("--val", type=int, default=16, help="validation images (evaluated once)")
    p.add_argument("--repeats", type=int, default=3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    step_arguments(p, batches=24)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the fastest step, so the strictest ratio; "
                        "0 keeps torch's default)")
    p.add_argument("--gpu", action="store_true", help="also measure ResNet-50 on CUDA at 224 px")
    p.add_argument("--gpu-batches", type=int, default=40)
    p.add_argument("--gpu-batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers for the GPU run")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    r = compare(args.arch, args.size, args.batch_size, args.batches, args.val, 10, "cpu", 0,
                args.repeats)
    print(f"CPU ({torch.get_num_threads()} threads), {args.arch} at {args.size} px, batch "
          f"{args.batch_size}, {args.batches} batches ({r['images']} images), {args.val} val images")
    print(f"  {'':27s}   {'wall clock':>12s}   {'process CPU time':>16s}")
    print(f"  bare forward+backward+step : {r['bare_ips']:8.1f} img/s   {r['cpu_bare_ips']:10.1f} img/s")
    print(f"  finetune() loop            : {r['loop_ips']:8.1f} img/s   {r['cpu_loop_ips']:10.1f} img/s")
    print(f"  ratio loop / bare          : {r['ratio']:8.3f}         {r['cpu_ratio']:10.3f}"
          "         (target >= 0.95)")
    print("  (CPU time is what to read on a shared machine: it does not count time spent waiting "
          "for a core)")

    m = memory_formats(args.arch, args.size, args.batch_size, args.batches, 10, args.repeats)
    (cl_w, cl_c), (co_w, co_c) = m["channels_last"], m["contiguous"]
    print("CPU memory format, bare step, same model and batches:")
    print(f"  channels_last              : {cl_w:8.1f} img/s   {cl_c:10.1f} img/s")
    print(f"  contiguous (NCHW)          : {co_w:8.1f} img/s   {co_c:10.1f} img/s")
    print(f"  ratio channels_last / NCHW : {cl_w / co_w:8.3f}         {cl_c / co_c:10.3f}")

    m = precisions(args.arch, args.size, args.batch_size, args.batches, 10, args.repeats)
    (b_w, b_c), (f_w, f_c) = m["bf16"], m["fp32"]
    print(f"CPU precision, bare step, channels_last (auto picks {resolve_precision('auto', 'cpu')} "
          "on this CPU):")
    print(f"  bf16 autocast              : {b_w:8.1f} img/s   {b_c:10.1f} img/s")
    print(f"  fp32                       : {f_w:8.1f} img/s   {f_c:10.1f} img/s")
    print(f"  ratio bf16 / fp32          : {b_w / f_w:8.3f}         {b_c / f_c:10.3f}")

    if args.gpu:
        if not torch.cuda.is_available():
            print("GPU: CUDA not available, section skipped")
            return 0
        r = compare("resnet50", 224, args.gpu_batch_size, args.gpu_batches, 512, 48, "cuda",
                    args.workers, args.repeats)
        minutes = SERENGETI_IMAGES * TRAIN_SHARE / r["loop_ips"] / 60
        print(f"GPU {torch.cuda.get_device_name()}: ResNet-50, 224 px, batch {args.gpu_batch_size}, "
              f"bf16 autocast, channels_last, {args.workers} loader workers")
        print(f"  bare forward+backward+step : {r['bare_ips']:8.1f} images/s")
        print(f"  finetune() loop            : {r['loop_ips']:8.1f} images/s")
        print(f"  ratio loop / bare          : {r['ratio']:8.3f}")
        print(f"  implied Serengeti epoch    : {minutes:8.1f} minutes "
              f"({SERENGETI_IMAGES} x {TRAIN_SHARE} images; study: ~120 min on 2 V100s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
