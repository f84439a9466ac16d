import ast
import os
import subprocess
import sys

import pytest

from camtrap_ssl.studies import params as studies


def test_every_notebook_declares_only_checkable_parameters():
    checks = studies.rules()
    for name in studies.STUDIES:
        declared = studies.notebook_parameters(name)
        assert "profile" in declared and ("seed" in declared or "seeds" in declared)
        assert set(declared) <= set(checks), (name, set(declared) - set(checks))
        assert declared.get("runs_root", None) is None  # resolved, never a relative "runs"
        studies.check_request(name, {})  # the defaults themselves are valid


def test_notebook_parameters_read_as_papermill_reads_them():
    import papermill

    for name, notebook in studies.STUDIES.items():
        info = papermill.inspect_notebook(str(studies.NOTEBOOKS / notebook))
        assert studies.notebook_parameters(name) == {k: ast.literal_eval(v["default"])
                                                     for k, v in info.items()}


def test_a_notebook_checks_its_own_globals(tmp_path, monkeypatch):
    """What a study notebook does: pass globals(); only its declared parameters are picked."""
    monkeypatch.setenv("CAMTRAP_SSL_RUNS", str(tmp_path / "elsewhere"))
    namespace = {**studies.notebook_parameters(2), "In": [], "get_ipython": print, "_": None}
    checked = studies.check_params(2, namespace)
    assert set(checked) == set(studies.notebook_parameters(2))
    assert checked["runs_root"] == str(tmp_path / "elsewhere")  # None resolved like every run
    assert studies.check_params(2, {**namespace, "runs_root": "x/y"})["runs_root"] == "x/y"
    with pytest.raises(ValueError, match=r"study 2: seeds=\['0'\] is not allowed; seeds must be"):
        studies.check_params(2, {**namespace, "seeds": ["0"]})
    with pytest.raises(ValueError, match="study 2: parameter 'targets' has no value"):
        studies.check_params(2, {k: v for k, v in namespace.items() if k != "targets"})


def test_unknown_parameter_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"no parameter 'epoch'.*'epochs'"):
        studies.check_request("1", {"epoch": 3})


@pytest.mark.parametrize("params, word", [
    ({"profile": "huge"}, "profile"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"backbones": ["supervised", "mocov3"]}, "backbones"),
    ({"targets": []}, "targets"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 1e20}, "epochs"),
    ({"runs_root": 5}, "runs_root"),
    ({"replicates": 6}, "replicates"),
    ({"replicates": {"syn_serengeti": 0}}, "replicates"),
    ({"replicates": {"syn_serengeti": True}}, "replicates"),
])
def test_out_of_range_values_are_refused(params, word):
    """Each names the parameter (a dict's entry by its key) and what it allows."""
    with pytest.raises(ValueError, match=rf"{word}(\['\w+'\])?=.* is not allowed; {word}(\['\w+'\])? must be"):
        studies.check_request("2", params)


@pytest.mark.parametrize("seeds", [[-1], ["0"], [1.0], [True], [], [0, 0], 0])
@pytest.mark.parametrize("study", ["1", "2", "rq1", "3", "3-appendix", "4"])
def test_every_study_takes_seeds_and_refuses_bad_ones(study, seeds):
    with pytest.raises(ValueError, match=r"seeds=.* is not allowed; seeds must be"):
        studies.check_request(study, {"seeds": seeds})
    with pytest.raises(ValueError, match=f"study {study} has no parameter 'seed'"):
        studies.check_request(study, {"seed": 0})


@pytest.mark.parametrize("study", ["1", "2", "rq1"])
def test_replicates_default_to_the_power_design_of_the_profile(study):
    """``replicates=None`` is the profile's power design (the demo's key targets get more runs,
    tiny's none); a dict is taken as given; a target it names is checked like any target."""
    demo = studies.check_request(study, {"profile": "demo"})["replicates"]
    assert demo == studies.REPLICATES["demo"] and demo["syn_serengeti"] > 3
    assert studies.check_request(study, {"profile": "tiny"})["replicates"] == {}
    assert studies.check_request(study, {"replicates": {"syn_cifar": 4}})["replicates"] == {"syn_cifar": 4}
    with pytest.raises(ValueError, match="target"):
        studies.check_request(study, {"replicates": {"syn_nowhere": 4}})


def test_run_options_pass_any_field_a_study_does_not_vary_and_refuse_the_rest():
    studies.check_request("1", {"run_options": {"precision": "fp32", "label_fraction": 0.5}})
    with pytest.raises(ValueError, match=r"run_options=.* is not allowed.*\(unknown: \['seed'\]\)"):
        studies.check_request("4", {"run_options": {"seed": 3}})
    with pytest.raises(ValueError, match="precision='fp16' is not allowed"):
        studies.check_request("3", {"run_options": {"precision": "fp16"}})


def test_study_settings_accept_what_a_run_spec_accepts():
    studies.check_request("2", {"targets": ["serengeti", "syn_cifar"], "epochs": 10_000})
    with pytest.raises(ValueError, match="epochs=10001"):
        studies.check_request("2", {"epochs": 10_001})


def test_unknown_study_lists_the_studies():
    with pytest.raises(ValueError, match="allowed"):
        studies.check_request("5", {})


@pytest.mark.slow  # starts a kernel
def test_a_failed_study_names_the_partial_notebook_it_left(tmp_path):
    """Study 3's appendix needs Study 3's curves: with an empty runs root it fails in its checks."""
    r = subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", "study", "3-appendix", "-p",
                        "profile", '"tiny"', "--output-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1",
                            "CAMTRAP_SSL_RUNS": str(tmp_path / "runs")})
    failed = tmp_path / "out" / "study3_appendix.failed.ipynb"
    assert r.returncode == 1 and failed.is_file(), r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("camtrap-ssl study: study 3-appendix failed (FileNotFoundError")
    assert last.endswith(str(failed))
    assert str(tmp_path / "runs") in failed.read_text()  # the notebook resolved $CAMTRAP_SSL_RUNS
    assert not (tmp_path / "out" / "study3_appendix.ipynb").exists()


@pytest.mark.slow  # four CLI processes
def test_cli_refuses_bad_input_before_any_compute(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", *args], capture_output=True,
                              text=True, timeout=120)

    r = run("study", "1", "-p", "profile", '"huge"', "--output-dir", str(tmp_path))
    assert r.returncode != 0 and "profile" in r.stderr and "tiny" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was executed or written
    r = run("finetune", "--backbone", "supervised", "--target", "mnist")
    assert r.returncode == 2 and "target='mnist'" in r.stderr and "syn_serengeti" in r.stderr
    r = run("pretrain", "--method", "byol", "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "simclr" in r.stderr
    r = run("--help")
    assert r.returncode == 0 and "pretrain" in r.stdout and "book" in r.stdout


def test_explain_runs_on_real_camera_trap_jpegs(serengeti_samples, tmp_path):
    """Study 4's command on real Serengeti photos: large originals, night greyscale, crops."""
    from camtrap_ssl.studies import comparison


    pair = comparison.model_pair("simclr", "supervised", "syn_serengeti", "tiny",
                                 runs_root=tmp_path / "runs")
    table = comparison.explain_folder(pair, serengeti_samples, tmp_path / "out", ("gradcam", "scorecam"),
                                      size=32, limit=4, progress=False)
    pngs = sorted((tmp_path / "out").glob("*_saliency.png"))
    assert len(pngs) == 4 and all(p.stat().st_size > 1000 for p in pngs)
    assert len(table) == 8 and set(table.prediction) <= set(pair.classes)
    assert (tmp_path / "out" / "predictions.csv").exists()


@pytest.mark.slow
def test_explain_cli_names_bad_methods_before_loading_anything(tmp_path):
    r = subprocess.run([sys.executable, "-m", "camtrap_ssl.cli", "explain", str(tmp_path), "--out",
                        str(tmp_path / "o"), "--methods", "lime", "--profile", "tiny"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "lime" in r.stderr and "scorecam" in r.stderr
    assert not (tmp_path / "o").exists()


def test_output_problems_finds_what_a_published_page_must_not_show(tmp_path):
    """The check the tiny book's pages pass (tests/test_book.py), on a notebook crafted with one
    of each problem and clean outputs that must not be flagged."""
    import base64
    import json

    from camtrap_ssl.studies import book

    def cell(*outputs):
        return {"cell_type": "code", "metadata": {}, "source": [], "outputs": list(outputs)}

    png = base64.b64encode(b"/tmp/Warning" * 10).decode()
    nb = {"cells": [
        cell({"output_type": "stream", "name": "stdout", "text": ["note: 3 of 6 maps are blank\n"]},
             {"output_type": "display_data", "data": {"image/png": png, "text/html":
              f'<img src="data:image/png;base64,{png}"> see https://example.org/tmp/x'}}),
        cell({"output_type": "stream", "name": "stderr", "text": "something\n"}),
        cell({"output_type": "stream", "name": "stdout",
              "text": "/venv/lib/torch/jit/_script.py:1491: FutureWarning: deprecated\n"}),
        cell({"output_type": "stream", "name": "stdout",
              "text": "featvis class:  50%|\u2588\u2588\u2588\u2588\u2588     | 2/4 [00:01<00:01, 1.9it/s]"}),
        cell({"output_type": "execute_result", "data": {"text/plain": "PosixPath('/tmp/runs/x.csv')"}}),
        cell({"output_type": "execute_result", "data": {"text/html": "<td>/repo/copy/runs/a</td>"}}),
    ]}
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps(nb))
    problems = book.output_problems(path, paths=["/repo/copy"])
    by_cell = {int(p.split(":")[0].split()[1]) for p in problems}
    assert by_cell == {1, 2, 3, 4, 5}, problems  # cell 0 is clean: a note, an image, a URL
    assert any("stderr" in p for p in problems) and any("Warning" in p for p in problems)
    assert any("progress bar" in p for p in problems) and any("machine path" in p for p in problems)
    assert any("the path /repo/copy" in p for p in problems)


def test_the_answer_figure_goes_beside_the_answer(tmp_path):
    import base64
    import json

    from camtrap_ssl.studies import book

    png = b"\x89PNG\r\n\x1a\nfake"
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["answer-figure"]}, "source": [], "outputs": [
            {"output_type": "display_data", "data": {"image/png": base64.b64encode(png).decode(),
                                                     "text/plain": "<Figure>"}}]},
        {"cell_type": "code", "metadata": {"tags": ["answer"]}, "source": [], "outputs": [
            {"output_type": "execute_result", "data": {"text/markdown": "* **SSL better** in 1"}}]}]}
    (tmp_path / "rq1.ipynb").write_text(json.dumps(nb))
    out = book.write_answer(tmp_path / "rq1.ipynb", tmp_path / "rq1_answer.md")
    text = out.read_text()
    assert (tmp_path / book.ANSWER_FIGURE).read_bytes() == png
    assert text.index(f"]({book.ANSWER_FIGURE})") < text.index("* **SSL better** in 1")
    del nb["cells"][0]  # no figure: the sentences alone
    (tmp_path / "rq1.ipynb").write_text(json.dumps(nb))
    assert "![" not in book.write_answer(tmp_path / "rq1.ipynb", tmp_path / "b.md").read_text()


def test_studies_3_and_4_pool_only_seeds_scored_on_the_same_images(monkeypatch, capsys, tmp_path):
    """An embedded world is one world for every seed: all seeds pool. A real dataset's split is
    drawn with the run's seed: only the first seed is analysed, and the page says why."""
    from camtrap_ssl.studies import comparison

    asked = []
    monkeypatch.setattr(comparison, "model_pair", lambda *a, **k: asked.append(a[4]) or a[4])
    pairs = comparison.seed_pairs("simclr", "supervised", "syn_serengeti", "tiny", [0, 1, 2])
    assert list(pairs) == asked == [0, 1, 2] and capsys.readouterr().out == ""
    asked.clear()
    pairs = comparison.seed_pairs("simclr", "supervised", "serengeti", "tiny", [3, 1])
    assert list(pairs) == asked == [3]
    assert "only seed [3] is analysed" in capsys.readouterr().out
    # Study 3 writes and its appendix reads one path, named by the seeds asked for
    path = comparison.curves_path(tmp_path, "tiny", "syn_serengeti", "simclr", "supervised", [0, 1])
    assert path == tmp_path / "tiny" / "study3" / "curves_syn_serengeti_simclr_supervised_seeds0-1.csv"


@pytest.mark.slow
def test_study4_scores_the_crop_trained_pair_when_asked(tiny_book, tmp_path):
    """The book leaves Study 4's crop-trained pair off (``crop_view=False``); with it on, the page
    fine-tunes the pair on the boxes and scores both kinds of model on the same crops."""
    import json

    assert studies.notebook_parameters(4)["crop_view"] is False
    runs = tiny_book.parent.parent.parent / "runs"  # the frame-trained pair: the tiny book's
    out = studies.execute_study(4, tmp_path, progress=False, profile="tiny", seeds=[0],
                                runs_root=str(runs), crop_view=True)
    cells = json.loads(out.read_text())["cells"]
    crop = next(c for c in cells if c["cell_type"] == "code"
                and "crop_pairs" in "".join(c["source"]))
    shown = json.dumps(crop["outputs"])
    assert "is off" not in shown and "crop-trained" in shown and "frame-trained" in shown
    boxes = [d for d in runs.glob("tiny/syn_serengeti/*/seed0-*")
             if json.loads((d / "params.json").read_text())["spec"].get("view") == "box"]
    assert len(boxes) == 2  # the SSL and the SL backbone, fine-tuned on the boxes
