"""Study 1/2 tables: seed intervals, paired SSL - SL verdicts computed from the numbers, the
common convergence threshold, and the protocol on every row."""
from pathlib import Path

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
    assert "**near**" in text and "no difference the adjusted test can resolve: ssl" in text
    # the family is the two top-1 comparisons, named on the page with its method
    assert (d.top1_family == 2).all() and "2 top-1 %" in text and "Holm" in text
    assert "pretraining variance is not covered" in text
    # Holm over two: the smaller p doubled; the simultaneous interval (97.5 %) is wider than 95 %
    assert d.loc["far", "top1_p_adjusted"] == pytest.approx(2 * d.loc["far", "top1_p"])
    assert d.loc["far", "top1_adj_low"] < d.loc["far", "top1_low"]
    assert d.loc["far", "top1_level"] == pytest.approx(0.975)
    assert any("simultaneous 97.5 % interval" in c for c in shown.columns)


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


# ------------------------------------------------------------------ a family of comparisons

def _family_results(rng, effects, n_seeds=3, sd=1.0):
    """One target, a supervised baseline and one SSL backbone per entry of ``effects`` (its true
    mean top-1 difference); seed effects shared by all backbones (what pairing removes)."""
    rows = []
    seed_effect = rng.normal(0, 10, n_seeds)
    for k, effect in enumerate([None, *effects]):
        name = "sl" if effect is None else f"ssl{k}"
        noise = rng.normal(0, sd, n_seeds)
        for s in range(n_seeds):
            rows.append({"backbone": name, "paradigm": "SL" if effect is None else "SSL",
                         "family": None if effect is None else "instance", "target": "t",
                         "stands_in_for": "t", "seed": s, "run_dir": f"/runs/{name}/{s}",
                         "top1": 50 + seed_effect[s] + (0 if effect is None else effect) + noise[s]})
    return pd.DataFrame(rows)


def test_holm_calls_the_true_effects_and_holds_the_family_wise_error():
    """10 SSL backbones x 3 seeds, 2 with a true effect of 40 sd: those two are called, the 8
    null ones are not, and over many simulated tables the chance of any false call stays at alpha
    (within Monte-Carlo error), where unadjusted 95 % intervals make one in about a third."""
    effects = [40.0, -40.0] + [0.0] * 8
    rng = np.random.default_rng(20)
    d = report.paired_differences(_family_results(rng, effects), baseline="sl", metrics=("top1",))
    assert len(d) == 10 and (d.top1_family == 10).all()
    assert d.top1_level.iloc[0] == pytest.approx(1 - 0.05 / 10)
    called = dict(zip(d.backbone, d.top1_resolved))
    assert called["ssl1"] == 1 and called["ssl2"] == -1
    assert d.set_index("backbone").loc["ssl1", "top1_verdict"] == "ssl1 wins"
    assert d.set_index("backbone").loc["ssl2", "top1_verdict"] == "sl wins"
    reps, false_any, false_unadjusted, power = 300, 0, 0, 0
    for _ in range(reps):
        d = report.paired_differences(_family_results(rng, effects), baseline="sl",
                                      metrics=("top1",))
        nulls = d[d.backbone.isin([f"ssl{k}" for k in range(3, 11)])]
        assert len(nulls) == 8
        false_any += bool((nulls.top1_resolved != 0).any())
        false_unadjusted += bool(nulls.top1_verdict_unadjusted.str.endswith("wins").any())
        power += int((d.set_index("backbone").loc[["ssl1", "ssl2"], "top1_resolved"]
                      == [1, -1]).all())
    se = np.sqrt(0.05 * 0.95 / reps)
    assert false_any / reps <= 0.05 + 3 * se, false_any / reps  # <= alpha within MC error
    assert false_unadjusted / reps > 0.2  # without the adjustment: 1 - 0.95^8 = 0.34
    assert power >= 0.99 * reps


def test_adjusted_columns_agree_with_core_adjusted_t_intervals_where_nothing_is_pooled():
    from camtrap_ssl.core import intervals

    rng = np.random.default_rng(3)
    r = _family_results(rng, [3.0, 0.0, 1.5, -2.0], n_seeds=5)
    r["target"] = r.backbone.map(lambda b: "t" if b == "sl" else f"t{b}")  # one pool each ...
    base = r[r.backbone == "sl"]
    r = pd.concat([r[r.backbone != "sl"]] + [base.assign(target=f"tssl{k}") for k in range(1, 5)])
    d = report.paired_differences(r, baseline="sl", metrics=("top1",))
    assert d["pool"].nunique() == 4  # ... so each comparison's own sd on n - 1 = 4 df
    core = intervals.adjusted_t_intervals(dict(zip(d.backbone, d.top1_seed_diffs)))
    assert len(d) == len(core) == 4 and (d.top1_df == 4).all()
    for (_, r), c in zip(d.iterrows(), core):
        assert r.top1_diff == pytest.approx(c.mean) and r.top1_p == pytest.approx(c.p)
        assert r.top1_p_adjusted == pytest.approx(c.p_adjusted)
        assert (r.top1_adj_low, r.top1_adj_high) == pytest.approx((c.low, c.high))
        assert r.top1_resolved == {"SSL better": 1, "SL better": -1, "cannot tell": 0}[c.verdict]
    # adjusting a family again changes nothing
    pd.testing.assert_frame_equal(report.adjust(d, ("top1",)), d)


def test_comparisons_on_the_same_images_share_a_pooled_sd():
    """Four comparisons on one target: one sd pooled over them on 4 x (5 - 1) = 16 df, computed
    here by hand (the one-way layout's error mean square), and intervals narrower than each
    comparison's own t on 4 df would give."""
    from scipy import stats

    rng = np.random.default_rng(3)
    d = report.paired_differences(_family_results(rng, [3.0, 0.0, 1.5, -2.0], n_seeds=5),
                                  baseline="sl", metrics=("top1",))
    diffs = [np.asarray(v) for v in d.top1_seed_diffs]
    sp = np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in diffs) / 16)
    assert (d.top1_df == 16).all() and np.allclose(d.top1_sd, sp)
    for (_, r), v in zip(d.iterrows(), diffs):
        t = v.mean() / (sp / np.sqrt(5))
        assert r.top1_p == pytest.approx(2 * stats.t.sf(abs(t), 16))
        half = stats.t.ppf(1 - 0.05 / 8, 16) * sp / np.sqrt(5)
        assert (r.top1_adj_low, r.top1_adj_high) == pytest.approx((v.mean() - half, v.mean() + half))
        assert r.top1_high - r.top1_low == pytest.approx(2 * stats.t.ppf(0.975, 16) * sp / np.sqrt(5))
    assert (d.claim == "checkpoint").all()  # no pretraining seeds recorded: one checkpoint each


def test_pooled_holm_holds_the_family_wise_error_and_finds_true_effects_at_the_stated_power():
    """Simulated families of 6 comparisons, 3 seeds each, sd 1, pooled on 12 df: 2 true effects
    of the size core.power says a Bonferroni test finds with 80 % power; over many families the
    chance of any false call stays <= alpha, and each true effect is found at least that often."""
    from camtrap_ssl.core import power

    delta = power.min_detectable_difference(1.0, 3, 0.05, 0.8, 6, df=12)
    effects = [delta, -delta] + [0.0] * 4
    rng = np.random.default_rng(11)
    reps, false_any, found = 400, 0, 0
    for _ in range(reps):
        d = report.paired_differences(_family_results(rng, effects, sd=1.0 / np.sqrt(2)),
                                      baseline="sl", metrics=("top1",)).set_index("backbone")
        assert (d.top1_df == 12).all()
        false_any += bool((d.loc[[f"ssl{k}" for k in range(3, 7)], "top1_resolved"] != 0).any())
        found += int(d.loc["ssl1", "top1_resolved"] == 1) + int(d.loc["ssl2", "top1_resolved"] == -1)
    se = np.sqrt(0.05 * 0.95 / reps)
    assert false_any / reps <= 0.05 + 3 * se, false_any / reps
    assert found / (2 * reps) >= 0.8 - 3 * np.sqrt(0.8 * 0.2 / (2 * reps)), found / (2 * reps)


def test_a_comparison_without_spread_counts_in_the_family_but_is_never_called():
    rng = np.random.default_rng(5)
    r = _family_results(rng, [30.0, 0.0])
    flat = r.backbone == "ssl2"  # exactly the baseline + 2 at every seed: no spread, no test
    r.loc[flat, "top1"] = r.loc[r.backbone == "sl", "top1"].to_numpy() + 2.0
    # on its own images (its own pool): nothing to test it against
    alone = pd.concat([r[r.backbone != "sl"].assign(target=lambda x: "t_" + x.backbone),
                       r[r.backbone == "sl"].assign(target="t_ssl1"),
                       r[r.backbone == "sl"].assign(target="t_ssl2")])
    d = report.paired_differences(alone, baseline="sl", metrics=("top1",)).set_index("backbone")
    assert np.isnan(d.loc["ssl2", "top1_p"]) and d.loc["ssl2", "top1_resolved"] == 0
    assert "no seed-to-seed spread" in d.loc["ssl2", "top1_verdict"]
    assert d.loc["ssl1", "top1_p_adjusted"] == pytest.approx(2 * d.loc["ssl1", "top1_p"])
    # beside another comparison on the same images, the pooled sd tests it
    d = report.paired_differences(r, baseline="sl", metrics=("top1",)).set_index("backbone")
    assert d.loc["ssl2", "top1_sd"] == d.loc["ssl1", "top1_sd"] > 0
    assert np.isfinite(d.loc["ssl2", "top1_p"])


def test_resolution_is_core_powers_answer_for_the_observed_spread():
    from camtrap_ssl.core import power

    diffs = pd.DataFrame({"backbone": list("abcd"), "minus": "sl",
                          "top1_seed_diffs": [(1.0, 2.0, 3.0), (0.0, 2.0, 4.0),
                                              (5.0, 5.0, 5.0), (1.0, 4.0, 7.0, 10.0)]})
    res = report.resolution(diffs).loc["top1"]
    # sds 1, 2 and sqrt(15) (the flat comparison says nothing about the sd); n median 3
    sd = float(np.median([1.0, 2.0, np.sqrt(15.0)]))
    assert res["median sd"] == pytest.approx(2.0) == pytest.approx(sd)
    assert res["n seeds"] == 3 and res.comparisons == 4
    assert res["expected half-width"] == pytest.approx(power.half_width(2.0, 3, 0.05, 4))
    assert res["smallest detectable difference"] == pytest.approx(
        power.min_detectable_difference(2.0, 3, 0.05, 0.8, 4))
    text = report.resolution_text(report.resolution(diffs))
    assert f"{power.min_detectable_difference(2.0, 3, 0.05, 0.8, 4):.2f} points" in text
    assert "4 comparisons" in text
    empty = report.resolution(diffs.iloc[[2]]).loc["top1"]
    assert np.isnan(empty["smallest detectable difference"])
    assert "cannot be estimated" in report.resolution_text(report.resolution(diffs.iloc[[2]]))


def test_verdict_figure_draws_each_comparison_with_its_simultaneous_interval(results):
    import matplotlib
    matplotlib.use("Agg")
    d = report.paired_differences(results, baseline="sl")
    fig = report.verdict_figure(d)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ssl on far", "ssl on near"]
    lines = [c for c in ax.containers]  # one errorbar container per outcome drawn
    assert len(lines) == 2  # "far" resolved, "near" not
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["backbone better (1)", "cannot tell (1)"]
    assert "2 comparisons" in ax.get_title() and "Holm" in ax.get_title()


def test_warnings_become_notes_without_a_path(capsys):
    import warnings

    from camtrap_ssl.studies import comparison

    with comparison.warnings_as_notes():
        for _ in range(2):
            warnings.warn("gradcam: 3 of 6 maps are blank (all zero)", UserWarning)
    out = capsys.readouterr()
    assert out.out == "note: gradcam: 3 of 6 maps are blank (all zero)\n" and out.err == ""


def test_run_directories_are_shown_under_the_runs_root(results, tmp_path):
    results = results.assign(code_version="abc")
    shown = report.provenance(results, runs_root=tmp_path)
    dirs = shown["run_dir (under runs_root)"].tolist()
    assert len(dirs) == len(results) and dirs[0] == "far/sl/seed0"
    assert not any(str(tmp_path) in d for d in dirs)
    assert report.provenance(results).run_dir.tolist() == results.run_dir.tolist()
    joined = " ".join(results.run_dir[:2])
    assert report.under_runs_root(joined, tmp_path) == "far/sl/seed0 far/ssl/seed0"


@pytest.mark.slow  # spawns worker processes
def test_collect_in_worker_processes_makes_the_runs_one_process_makes(tmp_path):
    """Two one-thread workers train the unfinished runs side by side; the runs are the ones a
    single one-thread process trains (same directories, same numbers), read back in order, and
    the workers' output lands in the runs root's log, not on the page."""
    import torch

    from camtrap_ssl.experiments.spec import grid_specs

    def specs(root):
        # two targets: their worlds are generated side by side in the workers before any run
        return grid_specs(["supervised"], ["syn_ena24", "syn_cifar"], [0, 1, 2], profile="tiny",
                          epochs=1, runs_root=str(root))

    parallel = report.collect(specs(tmp_path / "a"), progress=False, workers=2)
    assert (tmp_path / "a" / "collect-workers.log").is_file()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = report.collect(specs(tmp_path / "b"), progress=False, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert not (tmp_path / "b" / "collect-workers.log").exists()
    assert parallel.seed.tolist() == [0, 1, 2, 0, 1, 2]
    assert parallel.target.tolist() == ["syn_ena24"] * 3 + ["syn_cifar"] * 3
    rel = lambda d, r: [str(Path(x).relative_to(r)) for x in d.run_dir]  # noqa: E731
    assert rel(parallel, tmp_path / "a") == rel(serial, tmp_path / "b")
    assert parallel.top1.tolist() == serial.top1.tolist()
    assert parallel.train_acc.tolist() == serial.train_acc.tolist()
    # finished runs are read, not trained again: nothing left for the workers
    again = report.collect(specs(tmp_path / "a"), progress=False, workers=2)
    assert again.top1.tolist() == parallel.top1.tolist()


def test_run_workers_parallelise_only_small_cpu_runs():
    from camtrap_ssl.experiments import parallel
    from camtrap_ssl.experiments.spec import grid_specs

    small = grid_specs(["supervised"], ["syn_ena24"], [0, 1], profile="tiny")
    assert parallel.run_workers(small[:1]) == 1
    assert 1 <= parallel.run_workers(small) <= 2
    big = grid_specs(["supervised_r50"], ["syn_ena24"], [0, 1], profile="paper")
    assert parallel.run_workers(big) == 1 == parallel.profile_workers("paper")
    assert parallel.run_workers(small) == min(2, parallel.profile_workers("tiny"))


@pytest.mark.slow  # spawns worker processes
def test_two_workers_drawing_the_same_world_at_once_leave_one_whole_world(tmp_path, monkeypatch):
    """The warm-up's cache safety does not rest on targets never sharing a world: two workers that
    generate and decode the same target into one empty cache at the same moment both finish, leave
    no half-written folder or file, and what stays is what one process alone writes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from camtrap_ssl.experiments import parallel
    from camtrap_ssl.experiments.spec import RunSpec

    def cached(cache):
        worlds = {p.relative_to(cache): p.read_bytes() for p in cache.rglob("*.json")}
        arrays = {}
        for p in (cache / "targets").glob("*.npz"):
            with np.load(p) as f:
                arrays[p.name] = {k: f[k] for k in f.files}
        return worlds, arrays

    spec = RunSpec("supervised", "syn_serengeti", "tiny", runs_root=str(tmp_path / "runs"))
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "race"))  # the spawned workers inherit it
    with ProcessPoolExecutor(2, mp.get_context("spawn")) as pool:
        done = list(pool.map(parallel._warm_quietly, [spec, spec], [str(tmp_path / "log")] * 2))
    assert done == ["syn_serengeti", "syn_serengeti"]
    monkeypatch.setenv("CAMTRAP_SSL_CACHE", str(tmp_path / "alone"))
    parallel._warm_quietly(spec, str(tmp_path / "log"))
    race, alone = cached(tmp_path / "race"), cached(tmp_path / "alone")
    assert race[0] and race[0] == alone[0]  # the world's JSON files, byte for byte
    # the decoded arrays (their file names key the files' modification times, so differ)
    by_ids = lambda d: sorted(d.values(), key=lambda a: a["ids"].tolist())  # noqa: E731
    assert len(race[1]) == len(alone[1]) > 0
    for a, b in zip(by_ids(race[1]), by_ids(alone[1])):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    leftovers = [p for p in (tmp_path / "race").rglob("*") if p.name.startswith((".tmp-", "."))]
    assert leftovers == []
