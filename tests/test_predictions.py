"""Every run saves its per-image validation probabilities, and its summary scores them per sequence
and for automation; the file alone reproduces those numbers."""
import io
import zipfile

import numpy as np
import pytest
import torch
from test_finetune import CLASSES, small_run, train_val

from camtrap_ssl.data import embedded
from camtrap_ssl.experiments import finetuning
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import practice, rundir
from camtrap_ssl.train import predictions as P


def _serengeti_run(root):
    spec = RunSpec("supervised", "syn_serengeti", "tiny", runs_root=root, epochs=1)
    summary, rd = finetuning.finetune_run(spec, progress=False)
    return summary, rundir.RunDir(rd)


@pytest.fixture(scope="module")
def serengeti(tmp_path_factory):
    return _serengeti_run(tmp_path_factory.mktemp("runs"))


def test_camera_trap_targets_carry_image_sequence_and_location_ids():
    from camtrap_ssl.data import cct, synthetic
    t = embedded.load_target("syn_serengeti", "tiny")
    index = cct.load_cct(synthetic.camtrap_world("serengeti", "tiny"))
    # the profile's extra validation frames come from a world of their own (same categories)
    extra = cct.load_cct(t.identity["extra_validation"]["json"])
    images = {**index.images, **extra.images}
    category = {**dict(index.samples), **dict(extra.samples)}
    for ds in (t.train, t.val):
        assert len(ds.ids) == len(ds.sequence_ids) == len(ds.locations) == len(ds)
        for k in range(len(ds)):  # row k is image ids[k], of that sequence and site
            image = images[ds.ids[k]]
            assert ds.sequence_ids[k] == str(image["seq_id"])
            assert ds.locations[k] == str(image["location"])
            assert int(ds.labels[k]) == index.label_of[category[ds.ids[k]]]
    assert not set(t.train.sequence_ids) & set(t.val.sequence_ids)
    assert len(set(t.val.sequence_ids)) < len(t.val)  # sequences of several frames
    cifar = embedded.load_target("syn_cifar", "tiny")
    assert getattr(cifar.val, "sequence_ids", None) is None


def test_a_run_saves_predictions_that_reproduce_its_summary(serengeti):
    summary, run = serengeti
    assert rundir.PREDICTIONS not in rundir.FINISHED
    pred = run.predictions()
    val = embedded.load_target("syn_serengeti", "tiny").val
    assert pred["probs"].dtype == np.float16 and pred["probs"].shape == (len(val), len(summary["classes"]))
    assert np.array_equal(pred["labels"], val.labels.numpy())
    for name in P.FIELDS:
        assert pred[name].tolist() == list(getattr(val, name))
    # frame level: the file's argmax is the evaluation's prediction
    hit = pred["probs"].argmax(1) == pred["labels"]
    assert 100 * float(hit.mean()) == summary["final_top1"]
    cm = M.confusion_matrix(pred["labels"], pred["probs"].argmax(1), len(summary["classes"]))
    assert cm.tolist() == summary["confusion"]
    # sequence level and automation: recomputed from the file alone
    seq = practice.sequence_scores(pred["probs"], pred["labels"], pred["sequence_ids"],
                                   summary["classes"])
    agg = practice.aggregate_sequences(pred["probs"], pred["labels"], pred["sequence_ids"])
    scored = agg.labels >= 0
    per_seq = practice.coverage_at_accuracy(agg.probs[scored], agg.labels[scored], 0.95,
                                            unit="sequence")
    assert summary["sequence"] == {"available": True, **seq,
                                   "coverage_at_target": per_seq.as_dict()}
    assert summary["sequence"]["coverage_at_target"]["unit"] == "sequence"
    assert summary["final_seq_top1"] == seq["top1"] and seq["n_sequences"] < len(val)
    assert summary["final_seq_macro_f1"] == seq["macro_f1"]
    assert summary["final_seq_balanced_acc"] == seq["balanced_acc"]
    auto = practice.automation_report(pred["probs"], pred["labels"], summary["classes"], 0.95,
                                      sequences=pred["sequence_ids"], locations=pred["locations"],
                                      n_boot=200, seed=0)
    assert summary["automation"] == auto and auto["interval"]["unit"] == "sequence"
    at = auto["coverage_at_target"]
    assert summary["coverage_at_95"] == (at["coverage"] if at["reached"] else 0.0)
    assert summary["final_aurc"] == auto["aurc"]


def test_the_same_run_writes_the_same_file(serengeti, tmp_path):
    _, run = serengeti
    _, again = _serengeti_run(tmp_path)
    assert again.file(rundir.PREDICTIONS).read_bytes() == run.file(rundir.PREDICTIONS).read_bytes()


def test_a_target_without_sequences_says_so(tmp_path):
    summary, rd = finetuning.finetune_run(
        RunSpec("supervised", "syn_cifar", "tiny", runs_root=tmp_path, epochs=1), progress=False)
    assert summary["sequence"] == P.NO_SEQUENCES and summary["final_seq_top1"] is None
    pred = rundir.RunDir(rd).predictions()
    assert set(pred) == {"probs", "labels"}
    assert summary["automation"]["interval"]["unit"] == "image"
    assert 100 * float((pred["probs"].argmax(1) == pred["labels"]).mean()) == summary["final_top1"]


def test_a_run_killed_after_its_last_checkpoint_saves_the_same_predictions(tmp_path):
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        first = small_run(tmp_path, epochs=1)
        run = rundir.RunDir(tmp_path)
        saved = run.file(rundir.PREDICTIONS).read_bytes()
        assert set(run.predictions()) == {"probs", "labels"}  # a TensorDataset has no ids
        for name in (rundir.SUMMARY, rundir.PREDICTIONS):  # killed before these were written
            run.file(name).unlink()
        resumed = small_run(tmp_path, epochs=1)  # nothing left to train: evaluates again
        assert run.file(rundir.PREDICTIONS).read_bytes() == saved
        drop = ("wall_seconds",)
        assert {k: v for k, v in resumed.items() if k not in drop} == \
               {k: v for k, v in first.items() if k not in drop}
        run.clear()  # a restart removes the predictions with the other records
        assert not run.file(rundir.PREDICTIONS).exists()
        with pytest.raises(FileNotFoundError, match="predictions.npz"):
            run.predictions()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def test_float16_rounding_never_changes_the_predicted_class():
    # softmax 0.499975 / 0.500025: both round to 0.5 in float16, the second must stay the argmax
    logits = np.array([[0.0, 1e-4, -30.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    p = P.probabilities(logits)
    assert p.dtype == np.float16 and p.argmax(1).tolist() == [1, 0]
    assert np.abs(p.astype(np.float64).sum(1) - 1).max() < 1e-3
    practice.coverage_curve(p, np.array([1, 0]))  # accepted as probabilities


def test_predictions_file_is_a_plain_npz_of_what_was_given():
    val = train_val()[1]
    logits = np.random.default_rng(0).normal(size=(len(val), len(CLASSES))).astype(np.float32)
    val.ids, val.sequence_ids = [f"im{i}" for i in range(len(val))], np.arange(len(val)) // 3
    record = P.predictions_record(logits, val.tensors[1].numpy(), val)
    assert set(record) == {"probs", "labels", "ids", "sequence_ids"}
    data = P.npz_bytes(record)
    assert P.npz_bytes(record) == data
    stamps = {i.date_time for i in zipfile.ZipFile(io.BytesIO(data)).infolist()}
    assert stamps == {(1980, 1, 1, 0, 0, 0)}  # no time stamp inside: fixed dates
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        assert all(np.array_equal(f[k], v) for k, v in record.items())
    val.locations = ["a"] * (len(val) - 1)
    with pytest.raises(ValueError, match="locations has"):
        P.predictions_record(logits, val.tensors[1].numpy(), val)
