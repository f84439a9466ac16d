from camtrap_ssl.studies import reference


def test_reported_numbers_are_read_as_published():
    df = reference.reported()
    assert {"5.1", "5.10"} <= set(df.table)  # 5.10 is not 5.1
    assert reference.study_row("serengeti", "simclr", "resnet50-1x-sk")["top1"] == 93.87
    assert reference.study_row("serengeti", "barlowtwins")["top1"] == 92.79
    assert reference.study_row("nacti", "swav") is None
    assert reference.study_convergence("serengeti", "supervised", "resnet50-1x") == 18


def test_study_tables_put_our_run_beside_each_mapped_row():
    import pandas as pd

    from camtrap_ssl.studies import report

    ours = pd.DataFrame([{"backbone": "simclr", "method": "simclr", "target": "syn_serengeti",
                          "stands_in_for": "serengeti", "top1": 40.0, "convergence_epoch": 3,
                          "profile": "demo", "run_dir": "runs/demo/a"}])
    t = report.study_tables(ours, tables=["5.6", "5.11"]).reset_index()
    simclr = t[t.method == "simclrv2"]
    # every SimCLRv2 architecture row of table 5.6 gets our one number; other methods stay empty
    assert set(simclr[simclr.table == "5.6"].ours) == {40.0}
    assert t[(t.table == "5.6") & (t.method == "swav")].ours.isna().all()
    conv = simclr[simclr.table == "5.11"]
    assert set(conv.ours) == {3} and set(conv.measure) == {"convergence epoch"}
    assert set(simclr.run) == {"runs/demo/a"}
