import pandas as pd

from camtrap_ssl.studies import reference, report


def test_reported_numbers_are_read_as_published():
    df = reference.reported()
    assert {"5.1", "5.10"} <= set(df.table)  # 5.10 is not 5.1
    assert reference.study_row("serengeti", "simclr", "resnet50-1x-sk")["top1"] == 93.87
    assert reference.study_row("serengeti", "barlowtwins")["top1"] == 92.79
    assert reference.study_row("nacti", "swav") is None
    assert reference.study_convergence("serengeti", "supervised", "resnet50-1x") == 18


def _runs(tmp_path, top1s, conv, macro):
    """Per-run rows of one backbone on one target, seeds 0.., each with a two-epoch run dir."""
    from camtrap_ssl.train import rundir

    rows = []
    for seed, (t, c, f) in enumerate(zip(top1s, conv, macro)):
        rd = tmp_path / f"seed{seed}"
        rundir.RunDir(rd).write_metrics([{"epoch": 1, "val_top1": t / 2}, {"epoch": 2, "val_top1": t}])
        rows.append({"backbone": "simclr", "method": "simclr", "paradigm": "SSL", "family": "instance",
                     "target": "syn_serengeti", "stands_in_for": "serengeti", "seed": seed,
                     "top1": t, "top5": 90.0, "macro_f1": f, "balanced_acc": f, "tail_top1": None,
                     "empty_acc": 80.0, "ece": 5.0, "convergence_epoch": c, "profile": "demo",
                     "pretraining": "simclr, 20 ep", "fine-tuning": "full network, 2 ep",
                     "split": "location", "eval crop": "none", "run_dir": str(rd)})
    return report.with_common_convergence(pd.DataFrame(rows))


def test_study_tables_put_our_seed_mean_and_interval_beside_each_mapped_row(tmp_path):
    ours = _runs(tmp_path, [40.0, 44.0, 42.0], [3, 2, 2], [30.0, 34.0, 32.0])
    t = report.study_tables(ours, tables=["5.6", "5.11"]).reset_index()
    simclr = t[t.method == "simclrv2"]
    # every SimCLRv2 architecture row of table 5.6 gets our one (seed-mean) number
    acc = simclr[simclr.table == "5.6"]
    assert set(acc.ours) == {42.0} and set(acc["macro-F1 %"]) == {32.0}
    assert set(acc["ours 95 % t-interval"]) == {"[37.0, 47.0]"}  # 42 +- 4.303 * 2 / sqrt(3)
    assert set(acc.seeds) == {"0,1,2"} and acc.protocol.str.contains("full network").all()
    assert t[(t.table == "5.6") & (t.method == "swav")].ours.isna().all()
    conv = simclr[simclr.table == "5.11"]
    assert set(conv.ours) == {7 / 3} and set(conv.measure) == {"convergence epoch (own best)"}
    # one backbone: its own best seed-mean sets the threshold (95 % of 42 = 39.9): epoch 2 in all
    assert set(conv["ours: epochs to common threshold"]) == {2.0}
    assert all(str(tmp_path) in r for r in simclr.runs)
