"""Training many small runs side by side: one-thread worker processes.

The demo network at 64 px does not use two cores well from one process: on 2 AMD EPYC cores at
fp32 (2026-12-06, ``studies.budget.calibrate``) a fine-tuning step took 2.1 ms per image with two
threads in one process and 3.35 ms in each of two one-thread processes side by side, 1.25x the
throughput. :func:`train_in_workers` therefore trains a list of unfinished runs in spawned
one-thread processes; the caller then reads them back in order (a finished run is read, never
trained again). Larger networks, and anything on a GPU, train in the calling process.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

from camtrap_ssl.core import threads
from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.experiments.finetuning import finetune_run, load_spec_target
from camtrap_ssl.train.finetune import finished_summary

# Largest input side at which runs train faster as one-thread processes side by side than one
# after another on all cores (the measurement in the module docstring).
PARALLEL_MAX_INPUT = 64
MAX_WORKERS = 4
LOG_NAME = "collect-workers.log"


def profile_workers(profile) -> int:
    """Worker processes for many CPU runs at ``profile``: the cores this process may use
    (:func:`camtrap_ssl.core.threads.available_cpus`), at most ``MAX_WORKERS``, for small networks
    (``PARALLEL_MAX_INPUT``); 1 (the calling process) with a GPU or larger inputs."""
    if torch.cuda.is_available() or get_profile(profile).input_size > PARALLEL_MAX_INPUT:
        return 1
    return max(1, min(MAX_WORKERS, threads.available_cpus()))


def run_workers(specs) -> int:
    """Worker processes for ``specs``' runs: :func:`profile_workers` of their profiles, at most
    one per run; 1 for a single run or a spec that asks for CUDA."""
    specs = list(specs)
    if len(specs) < 2 or any(s.config().device == "cuda" for s in specs):
        return 1
    return min(len(specs), *(profile_workers(s.profile) for s in specs))


@contextlib.contextmanager
def _quiet(log: str):
    """One thread, and this worker's output (Python's and the C libraries', file descriptors 1
    and 2 of the worker process) appended to ``log``."""
    torch.set_num_threads(1)
    with open(log, "a") as f:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(f.fileno(), 1), os.dup2(f.fileno(), 2)
        with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            yield


def _train_quietly(spec, log: str) -> str:
    """A worker's task: train one run."""
    with _quiet(log):
        _, rd = finetune_run(spec, progress=False)
    return str(rd)


def _warm_quietly(spec, log: str) -> str:
    """A worker's task before the training: generate and decode one target's world (its caches)."""
    with _quiet(log):
        load_spec_target(spec, progress=False)
    return spec.target


def train_in_workers(specs, workers: int | None = None) -> int:
    """Train the unfinished runs among ``specs`` in ``workers`` (None: :func:`run_workers`)
    one-thread processes side by side; their output is appended to ``collect-workers.log`` in the
    runs root (nothing reaches the caller's page). Each spec's run directory is created here first
    (a missing embedded backbone is pretrained here, once, not in every worker). Each target's
    world is generated and decoded once before any run trains (the runs read the caches): the
    first data of each distinct target in the workers side by side (generation is single-threaded
    drawing; every world and decoded cache is written to a temporary name and renamed into place,
    so two workers that meet on one world both finish with the same files, as a test races them),
    any other data of a target (another view) after it. An error in a worker is raised here with
    its traceback. Returns the number of runs trained in workers (0: nothing to do, or one worker:
    the caller trains them itself)."""
    specs = list(specs)
    workers = run_workers(specs) if workers is None else int(workers)
    todo = [s for s in specs if finished_summary(s.check_writable(), s.convergence_tolerance) is None]
    if workers < 2 or len(todo) < 2:
        return 0
    data = {repr((s.target, s.view, s.box_margin, s.detections, s.detection_threshold, s.data_seed,
                  s.protocol()["strip"], s.data_options())): s for s in todo}
    first = {}
    for spec in data.values():
        first.setdefault(spec.target, spec)
    rest = [s for s in data.values() if first[s.target] is not s]
    log = todo[0].root / LOG_NAME
    with ProcessPoolExecutor(min(workers, len(todo)), mp.get_context("spawn")) as pool:
        for stage in (list(first.values()), rest):
            for _ in pool.map(_warm_quietly, stage, [str(log)] * len(stage)):
                pass
        for _ in pool.map(_train_quietly, todo, [str(log)] * len(todo)):
            pass
    return len(todo)
