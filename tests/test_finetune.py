"""The fine-tuning loop: it learns, its metrics are right, its run directory is a reliable record
(complete runs untouched, foreign runs refused, killed runs resumed to the same result)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from camtrap_ssl.models import create_model
from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import rundir
from camtrap_ssl.train.augment import augment_batch, augment_params
from camtrap_ssl.train.finetune import (
    CONVERGENCE_TOLERANCES,
    FinetuneConfig,
    finetune,
    load_finetuned,
    summarize,
    train_class_counts,
)

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["red", "green", "blue"]


def make_squares(n_per_class: int, seed: int, size: int = 32):
    """Coloured squares at random places on grey noise: class = colour (easily separable)."""
    g = torch.Generator().manual_seed(seed)
    n = n_per_class * len(CLASSES)
    x = 0.4 + 0.2 * torch.rand(n, 3, size, size, generator=g)
    y = torch.arange(n) % len(CLASSES)
    for i in range(n):
        s = int(torch.randint(size // 3, size // 2, (1,), generator=g))
        r, c = torch.randint(0, size - s, (2,), generator=g).tolist()
        x[i, :, r:r + s, c:c + s] = 0.05
        x[i, int(y[i]), r:r + s, c:c + s] = 0.95
    return torch.utils.data.TensorDataset(x, y)


def small_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("resnet10_w0125", num_classes=len(CLASSES))


def train_val():
    return make_squares(24, seed=1), make_squares(8, seed=2)


def small_run(run_dir, epochs: int = 5, lr: float = 1e-3) -> dict:
    """One deterministic small fine-tune (also started as a subprocess by the resume test)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = FinetuneConfig(epochs=epochs, batch_size=16, lr=lr, seed=3, device="cpu")
    return finetune(small_model(), *train_val(), CLASSES, cfg, run_dir,
                    extra_params={"test": "squares"}, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rd = tmp_path_factory.mktemp("runs") / "squares"
    t0 = time.time()
    summary = small_run(rd)
    return rd, summary, time.time() - t0


def _strip_time(obj):
    """Summary / metrics without wall-clock fields."""
    if isinstance(obj, list):
        return [_strip_time(o) for o in obj]
    return {k: v for k, v in obj.items() if k not in ("seconds", "wall_seconds")}


def test_learns_a_separable_task_quickly(trained):
    rd, summary, seconds = trained
    assert summary["final_top1"] >= 90.0, summary
    assert seconds < 60  # a few seconds on an idle laptop core; generous for shared machines
    rows = rundir.RunDir(rd).metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["train_acc"] > 50 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    # the final fine-tuned weights reproduce the recorded final accuracy
    model = load_finetuned(rd, small_model(seed=99))
    val = train_val()[1]
    with torch.no_grad():
        pred = model(val.tensors[0]).argmax(1)
    assert 100 * (pred == val.tensors[1]).float().mean().item() == pytest.approx(summary["final_top1"])


def test_summary_carries_final_confusion_and_convergence(trained):
    rd, summary, _ = trained
    rows = rundir.RunDir(rd).metrics()
    assert summary["confusion"] == rows[-1]["confusion"]
    cm = np.array(summary["confusion"])
    assert cm.shape == (3, 3) and cm.sum() == 24 and cm.sum(1).tolist() == [8, 8, 8]
    assert np.trace(cm) / 24 * 100 == pytest.approx(summary["final_top1"])
    top1 = [r["val_top1"] for r in rows]
    assert summary["convergence_epoch"] == M.convergence_epoch(top1, 0.5)
    assert set(summary["convergence_epochs"]) == {str(t) for t in CONVERGENCE_TOLERANCES}
    for t in CONVERGENCE_TOLERANCES:
        assert summary["convergence_epochs"][str(t)] == M.convergence_epoch(top1, t)
    assert summary["classes"] == CLASSES and summary["best_top1"] == max(top1)
    # the camera-trap metrics of the last epoch, from its confusion matrix; balanced training
    # classes (24 each) have no tail, and no class is named "empty"
    assert summary["final_macro_f1"] == pytest.approx(M.macro_f1(cm)) == rows[-1]["val_macro_f1"]
    assert summary["final_balanced_acc"] == pytest.approx(M.balanced_accuracy(cm))
    assert summary["final_tail_top1"] is None and summary["tail_classes"] == []
    assert summary["final_empty_acc"] is None
    assert 0 <= summary["final_ece"] <= 100 and summary["ece_bins"] == 15


def test_train_class_counts_read_labels_without_images():
    ds = torch.utils.data.TensorDataset(torch.zeros(5, 1), torch.tensor([0, 2, 2, 2, 1]))
    assert train_class_counts(ds, 4) == [1, 1, 3, 0]

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(1), [1, 1, 0][i]

    assert train_class_counts(Items(), 2) == [1, 2]


def test_convergence_epoch_is_configurable():
    history = [{"epoch": e + 1, "val_top1": v, "val_top5": 100.0, "train_acc": 0.0, "train_loss": 1.0,
                "per_class": {}, "confusion": []} for e, v in enumerate([50.0, 80.0, 88.5, 89.6, 90.0, 89.0])]
    s = summarize(history, FinetuneConfig(convergence_tolerance=0.5), CLASSES)
    assert s["convergence_epoch"] == 4 and s["best_epoch"] == 5
    assert s["convergence_epochs"] == {"0.5": 4, "1.0": 4, "2.0": 3}
    assert summarize(history, FinetuneConfig(convergence_tolerance=10.0), CLASSES)["convergence_epoch"] == 2
    assert summarize(history, FinetuneConfig(convergence_tolerance=0.0), CLASSES)["convergence_epoch"] == 5
    with pytest.raises(ValueError, match="convergence_tolerance"):
        FinetuneConfig(convergence_tolerance=-1)


def test_metrics_on_a_constructed_case():
    # 4 classes, 6 images; rows of logits rank the classes in a known order
    logits = np.array([[9, 1, 2, 3],   # true 0 -> pred 0
                       [1, 9, 2, 3],   # true 0 -> pred 1 (0 is last: not even in top-3)
                       [2, 9, 1, 3],   # true 1 -> pred 1
                       [9, 3, 2, 1],   # true 2 -> pred 0, 2 ranked 3rd
                       [1, 2, 9, 3],   # true 2 -> pred 2
                       [1, 2, 3, 9]], dtype=float)  # true 3 -> pred 3
    y = np.array([0, 0, 1, 2, 2, 3])
    rep = M.classification_report(logits, y, ["a", "b", "c", "d"])
    assert rep["top1"] == pytest.approx(100 * 4 / 6)
    assert M.topk_accuracy(logits, y, 2) == pytest.approx(4 / 6)
    assert M.topk_accuracy(logits, y, 3) == pytest.approx(5 / 6)
    assert rep["top5"] == 100.0  # k capped at 4 classes
    assert rep["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    pc = rep["per_class"]
    assert pc["a"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert pc["b"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    assert pc["c"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert pc["d"] == {"precision": 1.0, "recall": 1.0, "support": 1}
    # a class never predicted has undefined precision (None), not 0
    rep2 = M.classification_report(logits[:2], y[:2], ["a", "b", "c", "d"])
    assert rep2["per_class"]["c"]["precision"] is None


def test_complete_run_is_returned_without_retraining(trained):
    rd, summary, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in rd.iterdir()}
    model = small_model(seed=5)
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(epochs=5, batch_size=16, lr=1e-3, seed=3, device="cpu")
    t0 = time.time()
    again = finetune(model, *train_val(), CLASSES, cfg, rd,
                     extra_params={"test": "squares"}, progress=False)
    assert time.time() - t0 < 1.0
    assert again == summary
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir()} == before
    assert all(torch.equal(w0[k], v) for k, v in model.state_dict().items())


def test_another_convergence_tolerance_rereads_the_run_without_training(trained):
    """The tolerance only reads the finished metrics: not part of the run's identity."""
    rd, summary, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in rd.iterdir()}
    top1 = [r["val_top1"] for r in rundir.RunDir(rd).metrics()]
    cfg = FinetuneConfig(epochs=5, batch_size=16, lr=1e-3, seed=3, device="cpu",
                         convergence_tolerance=100.0)
    again = finetune(small_model(), *train_val(), CLASSES, cfg, rd,
                     extra_params={"test": "squares"}, progress=False)
    assert again["convergence_tolerance"] == 100.0 and again["convergence_epoch"] == 1  # all within 100
    assert again["convergence_epoch"] == M.convergence_epoch(top1, 100.0)
    assert {k: v for k, v in again.items() if not k.startswith("convergence_e")
            and k != "convergence_tolerance"} == {k: v for k, v in summary.items()
                                                  if not k.startswith("convergence_e")
                                                  and k != "convergence_tolerance"}
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir()} == before


def test_run_with_other_parameters_is_refused_naming_the_dir(trained):
    rd, _, _ = trained
    before = (rd / rundir.PARAMS).read_bytes()
    cfg = FinetuneConfig(epochs=5, batch_size=16, lr=5e-4, seed=3, device="cpu")
    with pytest.raises(ValueError, match="other parameters") as err:
        finetune(small_model(), *train_val(), CLASSES, cfg, rd,
                 extra_params={"test": "squares"}, progress=False)
    assert str(rd) in str(err.value) and "finetune" in str(err.value)
    assert (rd / rundir.PARAMS).read_bytes() == before


def test_bad_config_fails_before_work(tmp_path):
    for kw in ({"epochs": 0}, {"epochs": 10 ** 20}, {"epochs": 2.5}, {"epochs": True},
               {"batch_size": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"lr": float("inf")},
               {"lr": "1e-3"}, {"weight_decay": float("nan")}, {"seed": -1}, {"seed": "0"},
               {"device": "tpu"}, {"num_workers": -1}, {"convergence_tolerance": -1}):
        with pytest.raises(ValueError, match=f"^{next(iter(kw))}="):
            FinetuneConfig(**kw)
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="val_set"):
        finetune(small_model(), make_squares(2, 0), empty, CLASSES, FinetuneConfig(), tmp_path / "r",
                 progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    code = ("import sys; from tests.test_finetune import small_run; "
            "small_run(sys.argv[1], epochs=6)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics_file = killed / rundir.METRICS
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if (killed / rundir.CHECKPOINT).exists() and metrics_file.read_text().count("\n") >= 1:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # a half-finished run never looks complete
    assert not rundir.RunDir(killed).is_complete and not (killed / rundir.SUMMARY).exists()
    done_before = torch.load(killed / rundir.CHECKPOINT, weights_only=True)["epoch"]
    assert 1 <= done_before < 6  # resumes from a checkpoint, mid-run

    resumed = small_run(killed, epochs=6)
    reference = small_run(clean, epochs=6)
    assert _strip_time(resumed) == _strip_time(reference)
    assert _strip_time(rundir.RunDir(killed).metrics()) == _strip_time(rundir.RunDir(clean).metrics())
    a = torch.load(killed / rundir.CHECKPOINT, weights_only=True)["model"]
    b = torch.load(clean / rundir.CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / rundir.PREDICTIONS).read_bytes() == (clean / rundir.PREDICTIONS).read_bytes()


def _augment_reference(x, params):
    """The straightforward per-image version: flip, reflect-pad, crop, brightness/contrast."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    out = []
    for i in range(n):
        img = x[i].flip(2) if params[i, 0] < 0.5 else x[i]
        padded = torch.nn.functional.pad(img[None], (pad, pad, pad, pad), mode="reflect")[0]
        dx, dy = [min(int(p * (2 * pad + 1)), 2 * pad) for p in params[i, 1:3].tolist()]
        img = padded[:, dy:dy + h, dx:dx + w]
        b, c = 1 + 0.4 * (params[i, 3] - 0.5), 1 + 0.4 * (params[i, 4] - 0.5)
        m = img.mean()
        out.append(((img - m) * c + m * b).clamp(0, 1))
    return torch.stack(out)


def test_vectorized_augmentation_matches_per_image_reference():
    x = torch.rand(64, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    p = augment_params(64, seed=1, epoch=2)
    out = augment_batch(x, p)
    assert torch.allclose(out, _augment_reference(x, p), atol=1e-6)
    assert (p[:, 0] < 0.5).any() and (p[:, 0] >= 0.5).any()
    # same (seed, epoch) -> same draws; another epoch -> other draws
    assert torch.equal(p, augment_params(64, 1, 2)) and not torch.equal(p, augment_params(64, 1, 3))
    # draws follow the dataset index: a prefix of a larger dataset gets the same draws
    assert torch.equal(augment_params(100, 1, 2)[:64], p)


class _Items(torch.utils.data.Dataset):
    """Item access only (no batched reader)."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]


def test_batched_reads_equal_item_reads():
    from camtrap_ssl.train.finetune import _Indexed

    ds = make_squares(4, seed=0)
    idx = [5, 0, 11, 3]
    fast, slow = _Indexed(ds), _Indexed(_Items(ds))
    assert fast.reader is not None and slow.reader is None
    for a, b in zip(fast.__getitems__(idx), slow.__getitems__(idx)):
        assert torch.equal(a, b)
    x, y, i = fast.__getitems__(idx)
    assert y.dtype == torch.long and i.tolist() == idx and torch.equal(x[2], ds[11][0])


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from camtrap_ssl.models.utils import cpu_has_native_bf16
    cases = {"flags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n": True,
             "flags\t\t: fpu sse2 avx512f avx512_bf16\n": True,
             # plain AVX512: oneDNN emulates bf16 there and autocast is slower than fp32
             "flags\t\t: fpu sse2 avx512f avx512bw avx512vl\n": False,
             "processor\t: 0\n": False}
    for i, (text, expected) in enumerate(cases.items()):
        f = tmp_path / f"cpuinfo{i}"
        f.write_text("processor\t: 0\n" + text)
        assert cpu_has_native_bf16(str(f)) is expected, text
    assert cpu_has_native_bf16(str(tmp_path / "absent")) is False


def test_precision_is_resolved_into_the_identity(monkeypatch):
    from camtrap_ssl.models import utils
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(utils, "cpu_has_native_bf16", lambda native=native: native)
        assert utils.resolve_precision("auto", "cpu") == expected
        ident = FinetuneConfig(device="cpu").identity()
        assert ident["precision"] == expected  # never "auto": the two give other numbers
    assert utils.resolve_precision("fp32", "cuda") == "fp32"
    assert FinetuneConfig(precision="bf16").identity() != FinetuneConfig(precision="fp32").identity()
    with pytest.raises(ValueError, match=r"^precision='fp16'; allowed: \['auto', 'bf16', 'fp32'\]"):
        FinetuneConfig(precision="fp16")


def test_bf16_training_learns_and_computes_in_bf16(tmp_path):
    """Both precisions learn the separable task; their losses differ, so autocast was applied."""
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.set_num_threads(1)
        cfg = FinetuneConfig(epochs=4, batch_size=16, lr=1e-3, seed=3, device="cpu",
                             precision=precision)
        s = finetune(small_model(), *train_val(), CLASSES, cfg, tmp_path / precision, progress=False)
        assert s["final_top1"] >= 80.0, (precision, s["final_top1"])
        losses[precision] = [r["train_loss"] for r in rundir.RunDir(tmp_path / precision).metrics()]
        params = rundir.RunDir(tmp_path / precision).params()
        assert params["finetune"]["precision"] == precision
    assert losses["fp32"] != losses["bf16"]
