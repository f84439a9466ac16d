"""How many threads torch may use: the cores this process can actually run on.

Why: torch sizes its intra-op pool from the machine's core count, but a container or a
``taskset`` may allow far fewer. Three processes on two allowed cores, each spinning up a pool
sized for the host, slowed every fine-tune about 20-fold (issue 14): OpenMP threads waiting on
each other across time slices. The count here is the smallest of

* ``OMP_NUM_THREADS`` when set to a positive integer (the user's word wins, as in every OpenMP
  program),
* the CPU affinity mask (``os.sched_getaffinity``: ``taskset``, cpusets, Slurm),
* the cgroup CPU quota, rounded up (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us``; Docker ``--cpus``, Kubernetes limits),
* ``os.cpu_count()``.

:func:`configure` applies it to torch and exports it as ``OMP_NUM_THREADS`` (unless already set)
so processes started from here (notebook kernels, DataLoader and torchrun workers) get the same.

OpenMP's wait policy matters as much as the count. By default libgomp's idle threads spin; when
the cores are shared, a spinning thread burns the time slice its partner needs, and a forward
pass of the demo network took 0.18-0.66 s with two active threads against 0.065-0.08 s with
``OMP_WAIT_POLICY=PASSIVE`` and 0.09 s with one thread (measured side by side here at a load
average of 4-5 on 2 cores). libgomp reads the policy once, when torch loads it, so importing
this module sets ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` as defaults (a value the
user set is kept) before anything imports torch; ``camtrap_ssl.cli`` imports it first.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_limit", "choose_threads", "configure", "openmp_defaults"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs the cgroup quota allows (fractional), or ``None`` without a quota.

    cgroup v2: ``<root>/<own group>/cpu.max`` then ``<root>/cpu.max`` ("max 100000" or
    "200000 100000"); v1: ``<root>/cpu[,cpuacct]/cpu.cfs_quota_us`` (-1: none) over
    ``cpu.cfs_period_us``.
    """
    root = Path(root)
    own = None
    text = _read(Path(proc_cgroup))
    for line in (text or "").splitlines():
        if line.startswith("0::"):
            own = line[3:].strip().lstrip("/")
    for folder in ([root / own] if own else []) + [root]:
        value = _read(folder / "cpu.max")
        if value:
            quota, _, period = value.partition(" ")
            if quota == "max":
                return None
            try:
                return int(quota) / int(period or 100000)
            except ValueError:
                return None
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota, period = _read(root / sub / "cpu.cfs_quota_us"), _read(root / sub / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            try:
                q, p = int(quota), int(period)
            except ValueError:
                return None
            return None if q <= 0 or p <= 0 else q / p
    return None


def available_cpus(affinity=None, quota: float | None = None, cpu_count: int | None = None) -> int:
    """Cores this process may use: affinity mask, cgroup quota (rounded up), cpu count; >= 1.

    The arguments are for tests; ``None`` reads the real value.
    """
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if quota is None:
        quota = cgroup_cpu_limit()
    cpu_count = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    limits = [cpu_count]
    if affinity:
        limits.append(len(affinity))
    if quota:
        limits.append(math.ceil(quota))
    return max(1, min(limits))


def choose_threads(environ=None, cpus: int | None = None) -> int:
    """``OMP_NUM_THREADS`` if it is a positive integer, else :func:`available_cpus`."""
    environ = os.environ if environ is None else environ
    value = environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return cpus if cpus is not None else available_cpus()


def openmp_defaults(environ=None) -> int:
    """Set ``OMP_NUM_THREADS`` (to :func:`choose_threads`) and ``OMP_WAIT_POLICY=PASSIVE`` in
    ``environ`` unless already set; return the thread count. Effective for this process only
    if torch is not loaded yet, and for every child process started afterwards."""
    environ = os.environ if environ is None else environ
    n = choose_threads(environ)
    environ.setdefault("OMP_NUM_THREADS", str(n))
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return n


def configure(environ=None) -> int:
    """:func:`openmp_defaults`, then torch's intra-op threads set to the same count, which is
    returned. Called by ``camtrap-ssl`` at start-up."""
    import torch  # not at the top: importing this module must not load libgomp (see above)

    n = openmp_defaults(environ)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


openmp_defaults()  # at import, so that a torch loaded after this module starts with them
