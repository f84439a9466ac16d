"""The fine-tuning schedule and the per-epoch monitor subset: the cosine learning rate the loop
sets at each step, a resumed cosine run equal to an uninterrupted one, the monitor subset and the
rows and summary read from it."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from camtrap_ssl.core import fileio
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import rundir
from camtrap_ssl.train.finetune import (
    FinetuneConfig,
    finetune,
    finished_summary,
    lr_at,
    monitor_indices,
    summarize,
)

CLASSES = ["red", "green", "blue"]
N_VAL = 30


def squares(n: int, seed: int, size: int = 12):
    """Coloured squares on grey noise: class = colour (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.2 * torch.rand(n, 3, size, size, generator=g)
    y = torch.arange(n) % len(CLASSES)
    for i in range(n):
        r, c = torch.randint(0, size - 5, (2,), generator=g).tolist()
        x[i, :, r:r + 5, c:c + 5] = 0.05
        x[i, int(y[i]), r:r + 5, c:c + 5] = 0.95
    return torch.utils.data.TensorDataset(x, y)


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, len(CLASSES)))


def run(run_dir, epochs=3, **cfg):
    cfg = FinetuneConfig(epochs=epochs, batch_size=8, lr=1e-2, seed=1, device="cpu",
                         augmentation="demo", **cfg)
    return finetune(tiny_model(), squares(24, 1), squares(N_VAL, 2), CLASSES, cfg, run_dir,
                    progress=False)


def _strip_time(obj):
    if isinstance(obj, list):
        return [_strip_time(o) for o in obj]
    return {k: v for k, v in obj.items() if k not in ("seconds", "wall_seconds")}


@pytest.fixture(autouse=True)
def _deterministic():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


# ---------------------------------------------------------------------------------------------
# the schedule

def test_lr_at_follows_the_cosine_formula_and_constant_is_flat():
    lr, total = 0.1, 40
    assert lr_at(0, total, lr, "cosine") == lr
    assert lr_at(10, total, lr, "cosine") == pytest.approx(lr * (1 + math.sqrt(0.5)) / 2)
    assert lr_at(20, total, lr, "cosine") == pytest.approx(lr / 2)
    assert lr_at(39, total, lr, "cosine") == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert lr_at(39, total, lr, "cosine") < lr_at(38, total, lr, "cosine") < lr
    assert lr_at(total, total, lr, "cosine") == pytest.approx(0.0, abs=1e-15)
    assert all(lr_at(t, total, lr, "constant") == lr for t in range(total + 1))
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(0, total, lr, "linear")


def _lrs_the_loop_steps_with(monkeypatch, tmp_path, schedule):
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self, *a, **k):
        seen.append([g["lr"] for g in self.param_groups])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    run(tmp_path / schedule, epochs=2, lr_schedule=schedule)
    return seen


def test_the_loop_sets_the_cosine_rate_of_each_global_step(monkeypatch, tmp_path):
    seen = _lrs_the_loop_steps_with(monkeypatch, tmp_path, "cosine")
    total = 2 * math.ceil(24 / 8)  # 2 epochs of 3 steps
    assert len(seen) == total
    assert seen == [[lr_at(t, total, 1e-2, "cosine")] for t in range(total)]
    assert seen[0] == [1e-2] and seen[-1][0] < 1e-3


def test_constant_schedule_keeps_the_configured_rate(monkeypatch, tmp_path):
    seen = _lrs_the_loop_steps_with(monkeypatch, tmp_path, "constant")
    assert len(seen) == 6 and seen == [[1e-2]] * 6


class _Killed(Exception):
    pass


@pytest.mark.parametrize("killed_after", [1, 2])
def test_a_resumed_cosine_run_equals_an_uninterrupted_one(monkeypatch, tmp_path, killed_after):
    """Killed after epoch 1 (mid-schedule) or after the last epoch's checkpoint (the final
    evaluation is then redone from the checkpoint): the same metrics, weights and predictions."""
    cfg = {"epochs": 2, "lr_schedule": "cosine", "monitor_images": 10}
    reference = run(tmp_path / "clean", **cfg)
    save, saves = fileio.atomic_torch_save, []

    def save_then_die(obj, path):
        save(obj, path)
        saves.append(obj["epoch"])
        if len(saves) == killed_after:
            raise _Killed

    monkeypatch.setattr(fileio, "atomic_torch_save", save_then_die)
    with pytest.raises(_Killed):
        run(tmp_path / "killed", **cfg)
    monkeypatch.setattr(fileio, "atomic_torch_save", save)
    assert not rundir.RunDir(tmp_path / "killed").is_complete
    resumed = run(tmp_path / "killed", **cfg)

    assert _strip_time(resumed) == _strip_time(reference)
    killed, clean = rundir.RunDir(tmp_path / "killed"), rundir.RunDir(tmp_path / "clean")
    assert _strip_time(killed.metrics()) == _strip_time(clean.metrics())
    a = torch.load(killed.file(rundir.CHECKPOINT), weights_only=True)
    b = torch.load(clean.file(rundir.CHECKPOINT), weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert killed.file(rundir.PREDICTIONS).read_bytes() == clean.file(rundir.PREDICTIONS).read_bytes()
    with np.load(killed.file(rundir.PREDICTIONS)) as f:
        assert len(f["labels"]) == N_VAL  # the whole split, also when only re-evaluated


# ---------------------------------------------------------------------------------------------
# the monitor subset

def test_monitor_indices_are_a_fixed_sorted_subset():
    idx = monitor_indices(100, 17)
    assert np.array_equal(idx, monitor_indices(100, 17))  # the same for every run
    assert len(idx) == 17 and len(set(idx.tolist())) == 17
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 100
    assert np.array_equal(idx, np.sort(np.random.default_rng(0).permutation(100)[:17]))
    assert not np.array_equal(idx, np.arange(17))  # drawn, not the first k
    assert set(monitor_indices(100, 5).tolist()) <= set(idx.tolist())  # nested in k
    for k in (None, 100, 250):
        assert np.array_equal(monitor_indices(100, k), np.arange(100))


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """A 3-epoch cosine run scoring 10 of 30 validation images per epoch, with the weights after
    each epoch (read from its checkpoint as the run goes)."""
    mp = pytest.MonkeyPatch()
    save, weights = fileio.atomic_torch_save, {}

    def save_and_keep(obj, path):
        save(obj, path)
        weights[obj["epoch"]] = {k: v.clone() for k, v in obj["model"].items()}

    mp.setattr(fileio, "atomic_torch_save", save_and_keep)
    torch.use_deterministic_algorithms(True)
    try:
        rd = tmp_path_factory.mktemp("runs") / "monitored"
        summary = run(rd, epochs=3, lr_schedule="cosine", monitor_images=10)
    finally:
        mp.undo()
    return rd, summary, weights


def _top1_on(weights, indices):
    model = tiny_model()
    model.load_state_dict(weights)
    val = squares(N_VAL, 2)
    with torch.no_grad():
        logits = model.eval()(val.tensors[0][indices]).numpy()
    return M.top1_accuracy(logits, val.tensors[1][indices].numpy())


def test_rows_score_the_monitor_subset_and_the_whole_split_at_the_end(monitored):
    rd, summary, weights = monitored
    rows = rundir.RunDir(rd).metrics()
    idx = monitor_indices(N_VAL, 10)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["monitor_images"] for r in rows] == [10, 10, 10]
    for r in rows[:-1]:  # the monitor top-1 of the weights after that epoch, on exactly idx
        assert r["monitor_top1"] == pytest.approx(_top1_on(weights[r["epoch"]], idx))
        assert r["val_top1"] is None and r["val_top5"] is None and r["val_macro_f1"] is None
        assert r["per_class"] is None and r["confusion"] is None and r["tail_classes"] is None
    # the last row: the whole split (predictions.npz), the monitor top-1 read from its rows idx
    last = rows[-1]
    with np.load(rundir.RunDir(rd).file(rundir.PREDICTIONS)) as f:
        probs, labels = f["probs"], f["labels"]
    assert len(labels) == N_VAL
    assert last["monitor_top1"] == pytest.approx(M.top1_accuracy(probs[idx], labels[idx]))
    assert last["val_top1"] == pytest.approx(M.top1_accuracy(probs, labels))
    assert last["monitor_top1"] == pytest.approx(_top1_on(weights[3], idx))
    assert np.array(last["confusion"]).sum() == N_VAL and last["val_top5"] is not None
    assert last["per_class"] is not None and last["val_macro_f1"] is not None


def test_summary_reads_best_and_convergence_from_the_monitor(monitored):
    rd, summary, _ = monitored
    rows = rundir.RunDir(rd).metrics()
    curve = [r["monitor_top1"] for r in rows]
    assert summary["best_epoch"] == int(np.argmax(curve)) + 1
    assert summary["best_top1"] == max(curve)
    assert summary["convergence_epoch"] == M.convergence_epoch(curve, 0.5)
    assert summary["final_top1"] == rows[-1]["val_top1"]
    assert summary["monitor_images"] == 10 and summary["lr_schedule"] == "cosine"
    again = finished_summary(rd, 0.0)  # another tolerance: re-read from the monitor curve
    assert again["convergence_epoch"] == M.convergence_epoch(curve, 0.0)


def test_summarize_takes_best_from_monitor_and_final_from_the_last_row():
    def row(e, mon, full=None):
        return {"epoch": e, "monitor_top1": mon, "monitor_images": 4, "val_top1": full,
                "val_top5": None if full is None else 100.0, "train_acc": 1.0, "train_loss": 1.0,
                "per_class": None, "confusion": None}
    history = [row(1, 50.0), row(2, 80.0), row(3, 70.0, full=90.0)]
    s = summarize(history, FinetuneConfig(convergence_tolerance=0.5, lr_schedule="cosine"), CLASSES)
    assert (s["best_epoch"], s["best_top1"], s["best_top5"]) == (2, 80.0, None)
    assert s["convergence_epoch"] == 2 and s["convergence_epochs"]["2.0"] == 2
    assert (s["final_top1"], s["final_top5"]) == (90.0, 100.0)
    assert s["monitor_images"] == 4 and s["lr_schedule"] == "cosine"


def test_old_metrics_logs_read_val_top1_as_the_monitor_curve():
    assert M.monitor_curve([{"val_top1": 3.0}, {"monitor_top1": 4.0, "val_top1": None}]) == [3.0, 4.0]


def test_a_monitor_as_large_as_the_split_scores_it_whole_every_epoch(tmp_path):
    whole = run(tmp_path / "all", epochs=2, monitor_images=N_VAL)
    unset = run(tmp_path / "none", epochs=2)
    rows = rundir.RunDir(tmp_path / "all").metrics()
    for r in rows:
        assert r["monitor_images"] == N_VAL and r["monitor_top1"] == r["val_top1"]
        assert r["confusion"] is not None and r["val_top5"] is not None
    assert _strip_time(rows) == _strip_time(rundir.RunDir(tmp_path / "none").metrics())
    assert _strip_time(whole) == _strip_time(unset)


# ---------------------------------------------------------------------------------------------
# configuration

@pytest.mark.parametrize("bad", [{"lr_schedule": "linear"}, {"lr_schedule": None},
                                 {"monitor_images": 0}, {"monitor_images": -3},
                                 {"monitor_images": 2.5}, {"monitor_images": True}])
def test_bad_schedule_or_monitor_is_refused_naming_the_field(bad):
    (field, _), = bad.items()
    with pytest.raises(ValueError, match=field) as e:
        FinetuneConfig(**bad)
    if field == "lr_schedule":
        assert "constant" in str(e.value) and "cosine" in str(e.value)


def test_schedule_and_monitor_are_part_of_the_identity():
    base = FinetuneConfig()
    assert base.lr_schedule == "constant" and base.monitor_images is None
    assert FinetuneConfig(lr_schedule="cosine").identity() != base.identity()
    assert FinetuneConfig(monitor_images=16).identity() != base.identity()
    assert FinetuneConfig(monitor_images=16).identity()["monitor_images"] == 16


def test_run_specs_take_both_from_the_profile():
    tiny = RunSpec("supervised", "syn_serengeti", profile="tiny").config()
    assert (tiny.lr_schedule, tiny.monitor_images) == ("cosine", 16)
    paper = RunSpec("supervised", "syn_serengeti", profile="paper").config()
    assert (paper.lr_schedule, paper.monitor_images) == ("constant", None)


def test_study_curves_and_common_convergence_read_the_monitor(tmp_path):
    from camtrap_ssl.studies import report
    rd = tmp_path / "run"
    rundir.RunDir(rd).write_metrics([
        {"epoch": 1, "monitor_top1": 50.0, "val_top1": None, "train_acc": 60.0},
        {"epoch": 2, "monitor_top1": 45.0, "val_top1": 50.0, "train_acc": 70.0}])
    results = pd.DataFrame([{"target": "t", "backbone": "b", "paradigm": "SL", "seed": 0,
                             "top1": 50.0, "run_dir": str(rd)}])
    curves = report.learning_curves(results)
    assert curves.monitor_top1.tolist() == [50.0, 45.0]
    assert report.curve_bands(results)["mean"].tolist() == [50.0, 45.0]
    out = report.with_common_convergence(results, share=0.9)  # threshold 45: the monitor at epoch 1
    assert out.common_threshold.iloc[0] == pytest.approx(45.0) and out.epochs_to_common.iloc[0] == 1
