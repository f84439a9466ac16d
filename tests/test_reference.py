from camtrap_ssl import reference


def test_reported_numbers_are_read_as_published():
    df = reference.reported()
    assert {"5.1", "5.10"} <= set(df.table)  # 5.10 is not 5.1
    assert reference.study_row("serengeti", "simclr", "resnet50-1x-sk")["top1"] == 93.87
    assert reference.study_row("serengeti", "barlowtwins")["top1"] == 92.79
    assert reference.study_row("nacti", "swav") is None
    assert reference.study_convergence("serengeti", "supervised", "resnet50-1x") == 18
