import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_finetune import CLASSES, _strip_time, small_model, small_run, train_val

from camtrap_ssl.core import fileio, provenance
from camtrap_ssl.train import rundir
from camtrap_ssl.train.finetune import FinetuneConfig, finetune


def test_atomic_write_leaves_only_the_file(tmp_path):
    fileio.atomic_write_json(tmp_path / "a.json", {"x": 1})
    fileio.atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert os.listdir(tmp_path) == ["a.json"]
    assert fileio.read_json(tmp_path / "a.json") == {"x": 2}


def test_a_run_is_finished_with_params_summary_and_checkpoint_and_only_then(tmp_path):
    """One definition of a finished run, used by every layer (the grid, finetune_run, explain)."""
    rd = rundir.RunDir(tmp_path / "r")
    rd.write_params({"a": 1})
    rd.write_metrics([{"epoch": 1, "val_top1": 50.0}])
    assert not rd.is_complete and rd.missing == [rundir.SUMMARY, rundir.CHECKPOINT]
    assert rundir.find_runs(tmp_path) == []
    assert [r.path for r in rundir.find_runs(tmp_path, complete_only=False)] == [rd.path]
    rd.write_summary({"final_top1": 50.0})
    assert not rd.is_complete  # a summary without the weights cannot be explained or reused
    with pytest.raises(FileNotFoundError, match=r"not a finished fine-tuning run \(missing "
                                                r"\['checkpoint.pt'\]\)"):
        rundir.finished_run(rd.path)
    rd.file(rundir.CHECKPOINT).write_bytes(b"weights")
    assert rd.is_complete and rd.metrics() == [{"epoch": 1, "val_top1": 50.0}]
    assert rundir.finished_run(rd.file(rundir.CHECKPOINT)).path == rd.path


def test_environment_is_serialisable_and_versioned():
    env = provenance.environment()
    assert isinstance(env["torch"], str) and env["code_version"]
    fileio.fingerprint(env)


# -- one writer at a time, orphans, unreadable checkpoints ------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _until(proc, text: str, timeout: float = 120) -> None:
    """Read ``proc``'s stderr until a line contains ``text``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"process {proc.pid} never said {text!r} (exit {proc.poll()})")


@pytest.mark.slow  # three processes
def test_two_processes_on_one_run_train_it_once(tmp_path):
    rd = tmp_path / "run"
    code = ("import json, sys; from tests.test_finetune import small_run; "
            "print(json.dumps(small_run(sys.argv[1], epochs=2)))")
    with rundir.locked(rd):  # both start while this test holds the run, so both must wait
        procs = [subprocess.Popen([sys.executable, "-c", code, str(rd)], cwd=ROOT, env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        try:
            for p in procs:
                _until(p, f"waiting for PID {os.getpid()}")
        except BaseException:
            for p in procs:
                p.kill()
            raise
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    first, second = (json.loads(out) for out, _ in outs)
    # the run was trained once: both report the same record, wall time included
    assert first == second and first == rundir.RunDir(rd).summary()
    assert len(rundir.RunDir(rd).metrics()) == 2


@pytest.mark.slow  # a second process
def test_a_held_run_times_out_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    rd = tmp_path / "run"
    code = ("import sys, time; from camtrap_ssl.train import rundir\n"
            "with rundir.locked(sys.argv[1]):\n    print('held', file=sys.stderr, flush=True)\n"
            "    time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(rd)], cwd=ROOT, env=ENV,
                              stderr=subprocess.PIPE, text=True)
    try:
        _until(holder, "held")
        t0 = time.time()
        with pytest.raises(TimeoutError, match=rf"{rd} is being written by PID {holder.pid} .*"
                                               r"gave up after 0.5 s"), rundir.locked(rd, timeout=0.5):
            pass
        assert 0.4 < time.time() - t0 < 10
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stderr.close()
    with rundir.locked(rd, timeout=5):  # the kernel released the dead holder's lock
        assert (rd / rundir.LOCK).read_text().strip() == str(os.getpid())


def test_orphaned_temporaries_are_removed_by_the_next_run(tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    orphans = [rd / ".checkpoint.pt.k1l2m3.tmp", rd / ".metrics.jsonl.abc.tmp", rd / ".params.json.x.tmp"]
    for p in orphans:
        p.write_bytes(b"\0" * 4096)
    (rd / "notes.txt").write_text("mine")
    small_run(rd, epochs=1)
    assert not any(p.exists() for p in orphans) and not list(rd.glob(".*.tmp"))
    assert (rd / "notes.txt").read_text() == "mine" and rundir.RunDir(rd).is_complete


def test_a_truncated_checkpoint_is_named_and_restart_trains_from_scratch(tmp_path):
    rd, clean = tmp_path / "run", tmp_path / "clean"
    reference = small_run(clean, epochs=2)
    small_run(rd, epochs=2)
    (rd / rundir.SUMMARY).unlink()  # as if killed after the last checkpoint
    ckpt = rd / rundir.CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(ValueError) as err:
        small_run(rd, epochs=2)
    msg = str(err.value)
    assert str(ckpt) in msg and "truncated or corrupt" in msg and "--restart" in msg
    assert "weights_only" not in msg and "\n" not in msg
    assert not rundir.RunDir(rd).is_complete
    cfg = FinetuneConfig(epochs=2, batch_size=16, lr=1e-3, seed=3, device="cpu")
    again = finetune(small_model(), *train_val(), CLASSES, cfg, rd, extra_params={"test": "squares"},
                     progress=False, restart=True)
    assert _strip_time(again) == _strip_time(reference)
    assert _strip_time(rundir.RunDir(rd).metrics()) == _strip_time(rundir.RunDir(clean).metrics())
