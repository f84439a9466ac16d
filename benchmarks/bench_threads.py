"""OpenMP's wait policy on shared cores: forward passes of the demo network, side by side.

``camtrap_ssl.core.threads`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads, because on a
machine whose cores other processes also use, libgomp's default (idle threads spin) lets a
spinning thread take the time slice its partner needs. The policy is read once per process, so
each setting runs in its own fresh process; the settings alternate over ``--rounds`` so that a
change of the machine's load hits all of them alike. Prints the median seconds of a forward pass
(batch 32, 64 px, the demo profile's resnet18_w025) per setting, their ratios, and the load
average, which is the condition the ratio belongs to (on idle cores the policies should tie).

    python benchmarks/bench_threads.py [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import json, time, torch
from camtrap_ssl.models import create_model
torch.manual_seed(0)
m = create_model("resnet18_w025", num_classes=10).eval()
x = torch.rand(32, 3, 64, 64)
out = []
with torch.inference_mode():
    m(x)
    for _ in range(7):
        t = time.perf_counter(); m(x); out.append(time.perf_counter() - t)
print(json.dumps(sorted(out)[3]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    settings = {f"{args.threads} threads, ACTIVE (libgomp default)": (args.threads, "ACTIVE"),
                f"{args.threads} threads, PASSIVE (camtrap_ssl)": (args.threads, "PASSIVE"),
                "1 thread": (1, "PASSIVE")}
    times = {name: [] for name in settings}
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    for _ in range(args.rounds):
        for name, (n, policy) in settings.items():
            env = {**base, "OMP_NUM_THREADS": str(n), "OMP_WAIT_POLICY": policy}
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                                 text=True, check=True).stdout
            times[name].append(json.loads(out.strip().splitlines()[-1]))
    medians = {name: statistics.median(v) for name, v in times.items()}
    passive = medians[f"{args.threads} threads, PASSIVE (camtrap_ssl)"]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, t in medians.items():
        print(f"{name:40s} {t:.3f} s per forward pass   {t / passive:.2f}x the passive time")


if __name__ == "__main__":
    main()
