"""Study 1/2 tables: seed intervals, paired SSL - SL verdicts computed from the numbers, the
common convergence threshold, and the protocol on every row."""
import numpy as np
import pandas as pd
import pytest

from camtrap_ssl.experiments import results as run_results
from camtrap_ssl.studies import report
from camtrap_ssl.train import rundir

PROTOCOL = {"pretraining": "x, 1 ep", "fine-tuning": "full network, 3 ep, Adam lr 0.001, batch 8",
            "split": "location", "eval crop": "none (whole frame)"}


def _row(tmp_path, backbone, paradigm, target, seed, curve, macro=None):
    rd = tmp_path / target / backbone / f"seed{seed}"
    rundir.RunDir(rd).write_metrics([{"epoch": e + 1, "val_top1": v, "train_acc": 99.0}
                                     for e, v in enumerate(curve)])
    return {"backbone": backbone, "method": backbone, "paradigm": paradigm,
            "family": None if paradigm == "SL" else "instance", "target": target,
            "stands_in_for": target, "seed": seed, "top1": curve[-1], "top5": 100.0,
            "macro_f1": curve[-1] if macro is None else macro, "balanced_acc": curve[-1],
            "tail_top1": np.nan, "empty_acc": np.nan, "ece": 1.0, "convergence_epoch": 1,
            "profile": "tiny", "run_dir": str(rd), **PROTOCOL}


@pytest.fixture
def results(tmp_path):
    rows = []
    # target "far": SSL beats SL by 5 +- 0.5 points at every seed, though seeds vary by 20 points
    for seed, base in enumerate([40.0, 60.0, 50.0]):
        rows.append(_row(tmp_path, "sl", "SL", "far", seed, [base - 10, base]))
        rows.append(_row(tmp_path, "ssl", "SSL", "far", seed, [base + 4.5 + 0.5 * seed] * 2))
    # target "near": the SSL run is ahead at one seed, behind at another
    for seed, (a, b) in enumerate([(70.0, 72.0), (71.0, 69.0), (70.0, 70.5)]):
        rows.append(_row(tmp_path, "sl", "SL", "near", seed, [a / 2, a, a]))
        rows.append(_row(tmp_path, "ssl", "SSL", "near", seed, [b, b, b]))
    return report.with_common_convergence(pd.DataFrame(rows))


def test_paired_differences_claim_a_win_only_where_the_interval_excludes_zero(results):
    d = report.paired_differences(results, baseline="sl").set_index("target")
    assert d.loc["far", "top1_diff"] == pytest.approx(5.0)
    assert d.loc["far", "top1_low"] > 0 and d.loc["far", "top1_verdict"] == "ssl wins"
    assert d.loc["near", "top1_low"] < 0 < d.loc["near", "top1_high"]
    assert d.loc["near", "top1_verdict"] == "no clear difference"
    shown = report.differences_table(results, baseline="sl")
    assert shown.loc[("far", "ssl"), "protocol"].startswith("pretraining: x, 1 ep; fine-tuning: full")
    assert "vs sl: pretraining: x, 1 ep" in shown.loc[("far", "ssl"), "protocol"]
    text = report.verdict_text(results, baseline="sl")
    assert "**far**" in text and "better than sl: ssl" in text
    assert "**near**" in text and "no difference the interval can resolve: ssl" in text


def test_aggregate_gives_seed_means_intervals_and_keeps_the_protocol(results):
    a = report.aggregate(results).set_index(["target", "backbone"])
    sl = a.loc[("far", "sl")]
    assert sl.top1 == pytest.approx(50.0) and sl.n_seeds == 3 and sl.seeds == "0,1,2"
    assert sl.top1_low == pytest.approx(50 - 4.302653 * 10 / np.sqrt(3), rel=1e-5)
    assert np.isnan(sl.tail_top1)  # no tail classes: no value, not zero
    assert sl["fine-tuning"] == PROTOCOL["fine-tuning"] and sl.split == "location"
    table = report.results_table(results)
    assert table.protocol.str.contains("full network").all()
    assert table.protocol.str.contains("seeds 0,1,2").all()
    assert any("95 % t-interval over fine-tuning seeds" in c for c in table.columns)


def test_common_threshold_is_shared_by_the_backbones_of_a_target(results):
    far = results[results.target == "far"]
    # best seed-mean final top-1 on "far" is the SSL one (44.5, 65, 55.5: 55); 95 % of it = 52.25
    assert np.allclose(far.common_threshold, 0.95 * 55.0)
    sl = far[far.backbone == "sl"].set_index("seed").epochs_to_common
    assert sl.loc[1] == 2 and sl.loc[[0, 2]].isna().all()  # 60 reaches it; 40 and 50 never do
    ssl = far[far.backbone == "ssl"].set_index("seed").epochs_to_common
    assert np.isnan(ssl.loc[0]) and (ssl.loc[[1, 2]] == 1).all()
    s = report.paradigm_summary(results)
    assert s.loc["far", ("reached", "SL")] == "1/3"


def test_curve_bands_average_over_seeds(results):
    b = report.curve_bands(results)
    far_sl = b[(b.target == "far") & (b.backbone == "sl")].set_index("epoch")
    assert far_sl.loc[2, "mean"] == pytest.approx(50.0) and far_sl.loc[2, "n"] == 3
    assert far_sl.loc[2, "low"] < 50 < far_sl.loc[2, "high"]


def test_seeds_parameter_is_checked_before_any_run():
    from camtrap_ssl.studies import params

    params.check_request(1, {"seeds": [0, 1, 2]})
    for bad in ([], [0, 0], [-1], [1.5], 3, [True]):
        with pytest.raises(ValueError, match="seeds=.*distinct integers >= 0"):
            params.check_request(2, {"seeds": bad})
    with pytest.raises(ValueError, match="no parameter 'seed'"):  # replaced by seeds in 1 and 2
        params.check_request(1, {"seed": 0})


def test_protocol_reads_the_augmentation_and_crops_the_run_recorded():
    """The protocol column comes from what train.finetune wrote into params.json."""
    params = {"backbone": {"method": "supervised"}, "data": {"split": "gold_standard"},
              "finetune": {"lr": 1e-5, "batch_size": 128},
              "pretraining": {"config": {"method": "supervised"}, "epochs_done": 15,
                              "probes": {"pretrained": {"linear": 0.9}}},
              "preprocessing": {"augmentation": "norouzzadeh", "stored_size": 256,
                                "train_crop": "random 224 of 256", "eval_crop": "centre 224 of 256"}}
    row = run_results.protocol(params, {"epochs": 25})
    assert "aug norouzzadeh" in row["fine-tuning"] and "25 ep" in row["fine-tuning"]
    assert row["eval crop"] == "centre 224 of 256" and row["split"] == "gold_standard"
    assert "linear probe 90.0 %" in row["pretraining"]
    demo = {**params, "preprocessing": {"augmentation": "demo", "eval_crop": "none"}}
    assert run_results.protocol(demo, {"epochs": 5})["eval crop"] == "whole frame"


def test_the_baseline_defaults_to_the_sl_backbone_present_and_none_makes_an_empty_table(results):
    """At paper scale the SL backbone is supervised_r50, not the embedded world's "supervised":
    the comparison must not silently vanish (nor crash Study 2 when no SL run is in the table)."""
    assert report.sl_baseline(results) == "sl"
    pd.testing.assert_frame_equal(report.paired_differences(results),
                                  report.paired_differences(results, baseline="sl"))
    assert "minus sl" in " ".join(report.differences_table(results).columns)
    only_ssl = results[results.backbone == "ssl"]
    table = report.differences_table(only_ssl)
    assert table.empty and list(table.index.names) == ["target", "backbone"]
    assert "no comparison" in report.verdict_text(only_ssl)
