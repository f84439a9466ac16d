"""The book's cost model: the plan counts each run the pages train once, the estimate follows the
calibration, and the build prints it first."""
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data.embedded import FAMILY_TARGETS
from camtrap_ssl.studies import book, budget, rq1
from camtrap_ssl.studies.params import REPLICATES, notebook_parameters

FAKE_D4 = FAMILY_TARGETS[-1]  # the far end of the distance family
FAKE_CAL = {"cpu": "Test CPU", "device": "cpu", "precision": "fp32", "threads": 1,
            "load_average": 0.5, "train_seconds_per_image": 1e-3, "forward_seconds_per_image": 2e-4}


def _expected_runs(seeds, profile="tiny") -> int:
    """Distinct fine-tuning runs of the book from the notebooks' own defaults, counted by hand:
    the power design's replicates where it names a target, ``len(seeds)`` elsewhere."""
    s1, s2, r = notebook_parameters(1), notebook_parameters(2), notebook_parameters("rq1")
    s4 = notebook_parameters(4)
    reps = REPLICATES.get(profile, {})
    runs = lambda target: reps.get(target, len(seeds))  # noqa: E731
    study12 = len(set(s1["backbones"]) | set(s2["backbones"])) * sum(runs(t) for t in s2["targets"])
    # RQ1 fine-tunes its distance axis only (the other axes are linear probes)
    distance = (1 + len(r["ssl_backbones"])) * sum(runs(FAMILY_TARGETS[d]) for d in r["distances"])
    crops = 2 if s4["crop_view"] else 0  # Study 4's pair fine-tuned on the animals' boxes (seed 0), when on
    return study12 + distance + crops


@pytest.fixture(scope="module")
def tiny_plan():
    return budget.book_plan("tiny", runs_root="/nonexistent-runs")


def test_plan_counts_every_run_once(tiny_plan):
    seeds = list(get_profile("tiny").finetune_seeds)
    runs = tiny_plan[tiny_plan.kind == "finetune"]
    assert len(runs) == _expected_runs(seeds) and runs.key.is_unique
    # the supervised run on the Serengeti stand-in: trained by Study 1, reused by 2, 3 and 4
    sup = runs[(runs.backbone == "supervised") & (runs.target == "syn_serengeti") & (runs.seed == 0)
               & (runs.view == "frame")]
    assert len(sup) == 1 and sup.page.iloc[0] == "1" and sup.shared_with.iloc[0] == "2,3,4"
    assert not runs.finished.any()
    assert set(tiny_plan.page) >= {"1", "2", "rq1"} and "3" not in set(runs.page)
    # Study 4 fine-tunes nothing unless crop_view is on (then its pair on the boxes)
    assert set(runs[runs.page == "4"].target) <= {"syn_serengeti"}
    assert set(runs[runs.page == "rq1"].target) == {FAMILY_TARGETS[d] for d in
                                                    notebook_parameters("rq1")["distances"]}


def test_the_shared_rq1_point_is_counted_once(tiny_plan):
    """syn_serengeti_d4's probe with all labels, full budget, whole frames: asked for by the four
    probed axes, computed once; its fine-tuning run is the distance axis' far end."""
    d4 = FAKE_D4
    _, asked = budget.page_specs("rq1", "tiny", [0], "/nonexistent-runs")
    point = [s for s in asked if s.backbone == "supervised" and s.target == d4
             and s.label_fraction == 1.0 and s.view == "frame"]
    assert len(point) == 4  # labels, domain, budget, the frame view
    probes = tiny_plan[tiny_plan.kind == "probe"]
    assert len(probes[(probes.backbone == "supervised") & (probes.target == d4) & (probes.seed == 0)
                      & (probes.label_fraction == 1.0) & (probes.view == "frame")]) == 1
    # features are extracted once per backbone, pretraining seed, target and view
    extracted = probes[probes.eval_images > 0]
    assert len(extracted) == len(set(zip(extracted.backbone, extracted.seed, extracted.view)))
    runs = tiny_plan[tiny_plan.kind == "finetune"]
    rows = runs[(runs.backbone == "supervised") & (runs.target == d4) & (runs.seed == 0)]
    assert len(rows) == 1
    # image-steps: the profile's epochs over the family target's training share
    p = get_profile("tiny")
    n_val = round(0.25 * p.family_images)
    assert rows.image_steps.iloc[0] == p.finetune_epochs * (p.family_images - n_val)
    # evaluation: the monitor subset after each epoch but the last, the whole split after it
    assert p.monitor_images < n_val
    assert rows.eval_images.iloc[0] == (p.finetune_epochs - 1) * p.monitor_images + n_val


def test_a_label_share_costs_the_whole_sets_steps():
    """A share of the labels is repeated to the whole set's size (``with_label_fraction``), so a
    run at 10 % of the labels trains the steps of one at 100 % (within rounding)."""
    from camtrap_ssl.data.datasets import with_label_fraction
    from camtrap_ssl.data.embedded import load_target
    train = load_target(FAKE_D4, "tiny", progress=False).train
    repeated, record = with_label_fraction(train, 0.1, 0)
    assert budget.epoch_samples(len(train), 0.1) == pytest.approx(len(repeated), rel=0.15)
    assert record["n_labelled"] < len(train) / 2  # and yet the cost of the whole set
    assert budget.epoch_samples(len(train), 1.0) == len(train)


def test_rq1_specs_are_those_the_page_functions_build(monkeypatch):
    """The plan builds RQ1's specs itself (the page's functions train and probe); they must be
    the same: the distance axis' fine-tuning runs, the other axes' probes."""
    trained, probed = [], []

    def collect(specs, progress=False):
        trained.extend(specs)
        return pd.DataFrame({"target": [s.target for s in specs]})

    def probe_row(spec, record):
        probed.append(spec)
        return {"target": spec.target, "pretrained_on": "source", "budget_percent": 100,
                "mode": "linear probe", "label_fraction": spec.label_fraction}

    monkeypatch.setattr(rq1.report, "collect", collect)
    monkeypatch.setattr(rq1, "linear_probe_run", lambda s: {})
    monkeypatch.setattr(rq1, "probe_row", probe_row)
    p = notebook_parameters("rq1")
    reps = {FAKE_D4: 3}  # a replicate count of its own on the far end: the plan must follow it
    kw = dict(profile="tiny", seeds=[0, 1], runs_root="/nonexistent-runs", epochs=p["epochs"],
              seeded_pretraining=p["seeded_pretraining"])
    sl, ssl = p["sl_backbone"], p["ssl_backbones"]
    rq1.distance_results([sl, *ssl], p["distances"], replicates=reps, **kw)
    rq1.label_results([sl, *ssl], p["label_fractions"], **kw)
    rq1.domain_results(sl, p["in_domain"], **kw)
    rq1.budget_results(sl, ssl, p["pretraining_budgets"], **kw)
    rq1.view_results([sl, *ssl], p["views"], **kw)
    monkeypatch.setitem(REPLICATES, "tiny", reps)
    runs, probes = budget.page_specs("rq1", "tiny", [0, 1], "/nonexistent-runs")
    assert runs == trained and probes == probed and len(probes) > len(runs) > 0
    assert {s.seed for s in runs if s.target == FAKE_D4} == {0, 1, 2}
    assert {s.seed for s in probes} == {0, 1}  # the probed axes keep the book's seeds
    assert {s.pretrain_seed for s in runs if s.backbone in p["seeded_pretraining"]} == {0, 1, 2}
    # a probe of a seeded backbone (SimCLR's 50 % snapshot too) is one per pretraining seed; the
    # camera-trap SimCLR has one checkpoint
    seeded = [s for s in probes if s.backbone in p["seeded_pretraining"]]
    assert "simclr.b50" in {s.backbone for s in seeded}
    assert [s.pretrain_seed for s in seeded] == [s.seed for s in seeded]
    assert {s.pretrain_seed for s in probes if s.backbone == "simclr.camtrap"} == {0}


def test_the_demo_plan_keys_by_run_directory():
    """The demo's backbones are shipped, so every run is keyed by its real run directory, and
    that keying finds the same runs as the fallback key."""
    plan = budget.book_plan("demo", runs_root="/nonexistent-runs")
    runs = plan[plan.kind == "finetune"]
    assert (runs.key_kind == "run_dir").all()
    assert len(runs) == _expected_runs(get_profile("demo").finetune_seeds, "demo")
    # the power design's replicates: five runs per backbone on the Serengeti stand-in, each from
    # its own pretraining seed (shipped, so no pretraining is hidden in the build)
    ser = runs[(runs.target == "syn_serengeti") & (runs.backbone == "simclr") & (runs.view == "frame")]
    assert sorted(ser.seed) == list(range(REPLICATES["demo"]["syn_serengeti"]))
    assert runs.key.str.startswith("/nonexistent-runs/demo/").all()
    other = plan[plan.kind == "other"]
    assert len(other) > 0 and other.seconds.gt(0).all() and other.measured.str.len().gt(20).all()


def test_the_estimate_is_linear_in_the_calibration(tiny_plan):
    one = budget.estimate(tiny_plan, FAKE_CAL)
    two = budget.estimate(tiny_plan, {**FAKE_CAL, "train_seconds_per_image": 2e-3,
                                      "forward_seconds_per_image": 4e-4})
    todo = tiny_plan[~tiny_plan.finished]
    expected = todo.image_steps.sum() * 1e-3 + todo.eval_images.sum() * 2e-4
    assert one["train_seconds"] == pytest.approx(expected) and expected > 0
    assert two["train_seconds"] == pytest.approx(2 * one["train_seconds"])
    assert two["other_seconds"] == one["other_seconds"]
    assert one["seconds"] == pytest.approx(sum(p["seconds"] for p in one["pages"].values()))
    # a finished run is reused, not trained: it leaves the estimate
    done = tiny_plan.copy()
    first = done.index[done.kind == "finetune"][0]
    done.loc[first, "finished"] = True
    less = budget.estimate(done, FAKE_CAL)
    assert less["runs"] == one["runs"] - 1 and less["finished_runs"] == 1
    row = tiny_plan.loc[first]
    assert one["train_seconds"] - less["train_seconds"] == pytest.approx(
        row.image_steps * 1e-3 + row.eval_images * 2e-4)


def test_calibration_times_the_step_and_names_the_precision():
    cal = budget.calibrate("tiny", precision="fp32", steps=1)
    assert cal["precision"] == "fp32" and cal["cpu"] and cal["threads"] >= 1
    for k in ("train_seconds_per_image", "forward_seconds_per_image",
              "cpu_train_seconds_per_image"):
        assert cal[k] > 0, k
    assert budget.calibrate("tiny", steps=1)["precision"] in ("bf16", "fp32")


def test_cpu_model_reads_the_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t: avx\n")
    assert budget.cpu_model(str(info)) == "Some CPU 9000"
    assert budget.cpu_model(str(tmp_path / "missing")) == "unknown CPU"


def test_the_printed_estimate_states_runs_and_minutes(tiny_plan):
    out = io.StringIO()
    est = budget.print_estimate(tiny_plan, FAKE_CAL, file=out)
    text = out.getvalue()
    n = int((tiny_plan.kind == "finetune").sum())
    assert f"this build will train {n} runs" in text and "(Test CPU, CPU, fp32" in text
    assert f"about {est['seconds'] / 60:.0f} min on this machine" in text
    assert all(f"\n  {page} " in text for page in ("1", "2", "rq1"))


def test_build_book_prints_the_estimate_first_and_not_with_skip_studies(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(book, "run_studies", lambda *a, **k: calls.append("studies"))
    monkeypatch.setattr(book, "build_html", lambda *a, **k: Path("/tmp/html"))
    monkeypatch.setattr(budget, "calibrate", lambda *a, **k: calls.append("calibrate") or FAKE_CAL)
    book.build_book("tiny", run_studies_first=False)
    assert "this build will train" not in capsys.readouterr().out and calls == []
    book.build_book("tiny", runs_root="/nonexistent-runs")
    assert "[book] this build will train" in capsys.readouterr().out
    assert calls == ["calibrate", "studies"]


@pytest.mark.slow
def test_the_plan_is_the_run_directories_the_tiny_book_creates(tiny_book):
    runs_root = tiny_book.parent.parent.parent / "runs"
    if not runs_root.is_dir():
        pytest.skip("the tiny book was built from executed notebooks: no runs to count")
    made = {str(p) for p in runs_root.glob("tiny/*/*/seed*") if p.is_dir()}
    plan = budget.book_plan("tiny", runs_root=str(runs_root))
    runs = plan[plan.kind == "finetune"]
    assert (runs.key_kind == "run_dir").all()  # the book pretrained every backbone it used
    assert set(runs.key) == made and len(runs) == len(made)
    assert runs.finished.all()
    assert budget.estimate(plan, FAKE_CAL)["runs"] == 0


def test_a_forced_precision_reaches_the_calibration_and_every_run(monkeypatch, tmp_path):
    """`make book PRECISION=fp32` (the fp32 budget measured on a CPU with native bf16): the
    estimate is calibrated at fp32 and every study that takes run options gets it."""
    seen, calibrated, bars = {}, [], []
    monkeypatch.delenv("TQDM_DISABLE", raising=False)

    def execute(number, out, progress=False, **params):
        seen.update({number: params})
        bars.append(os.environ.get("TQDM_DISABLE"))  # what the study's kernel inherits

    monkeypatch.setattr(book, "execute_study", execute)
    monkeypatch.setattr(book, "build_html", lambda *a, **k: tmp_path)
    real = book.run_studies
    monkeypatch.setattr(book, "run_studies", lambda *a, **k: real(*a, output_dir=tmp_path, **k))
    monkeypatch.setattr(budget, "calibrate",
                        lambda profile, precision="auto", *a, **k: calibrated.append(precision) or FAKE_CAL)
    book.build_book("tiny", runs_root=str(tmp_path / "runs"), precision="fp32")
    assert calibrated == ["fp32"]
    takes = [s for s in seen if "run_options" in notebook_parameters(s)]
    assert set(takes) >= {"1", "2", "rq1", "3", "4", "compare"}  # the own-data page too
    assert all(seen[s]["run_options"] == {"precision": "fp32"} for s in takes)
    assert all("run_options" not in seen[s] for s in seen if s not in takes)
    # no progress bars on a published page; the variable is gone again after the build
    assert bars == ["1"] * len(seen) and "TQDM_DISABLE" not in os.environ
    with pytest.raises(ValueError, match="precision"):
        book.build_book("tiny", precision="fp16")


def test_calibrating_for_workers_times_one_thread_and_shares_it(monkeypatch):
    import torch

    threads = torch.get_num_threads()
    seen = []

    def fake(fn, steps):  # the step "takes" 0.32 s on however many threads torch has
        seen.append(torch.get_num_threads())
        return 0.32, 0.32

    monkeypatch.setattr(budget, "_median_step", fake)
    cal = budget.calibrate("tiny", "fp32", steps=2, workers=4)
    assert seen == [1, 1] and torch.get_num_threads() == threads  # timed on one, restored
    batch = get_profile("tiny").batch_size
    assert cal["workers"] == 4 and cal["threads"] == 1
    assert cal["train_seconds_per_image"] == pytest.approx(0.32 / batch / 4)
    out = io.StringIO()
    budget.print_estimate(budget.book_plan("tiny", runs_root="/nonexistent-runs"), cal, file=out)
    assert "4 one-thread workers" in out.getvalue()
