"""The book builds from papermill outputs, and each study page carries its figures and numbers."""
import json
import re

import pytest

from camtrap_ssl.studies.params import STUDIES

pytestmark = pytest.mark.slow

# the fewest figures each page must show on the tiny profile
# Study 1: learning curves, the Serengeti stand-in per class, coverage (no ENA24 target in the book)
MIN_FIGURES = {"worlds": 4, "study1_supervised": 3, "study2_self_supervised": 4,
               "study3_invariance": 6, "study3_appendix": 1, "study4_reasoning": 8,
               "rq1_when": 6, "compare_embedded": 2}


def _page(html_dir, name):
    path = html_dir / "studies" / f"{name}.html"
    assert path.exists(), f"{path} was not built"
    return path.read_text()


def test_every_notebook_ran_under_papermill_with_the_tiny_profile(tiny_book):
    studies_dir = tiny_book.parent.parent / "studies"
    for name in STUDIES.values():
        nb = json.loads((studies_dir / name).read_text())
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and 'profile = "tiny"' in "".join(injected[0]["source"]), name
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (name, errors[:1])


@pytest.mark.parametrize("name", sorted(MIN_FIGURES))
def test_each_page_shows_its_figures(tiny_book, name):
    html = _page(tiny_book, name)
    figures = re.findall(r'<img[^>]+src="[^"]+\.png"', html)
    assert len(figures) >= MIN_FIGURES[name], (name, len(figures))
    assert "Traceback" not in html


def test_study_tables_set_the_studys_numbers_beside_ours(tiny_book):
    html = _page(tiny_book, "study1_supervised")
    assert "91.93" in html  # the study's supervised R50 top-1 on Serengeti (table 5.1)
    assert "study_top1_r50" in html and "run_dir" in html
    html2 = _page(tiny_book, "study2_self_supervised")
    assert "92.79" in html2  # Barlow Twins R50 on Serengeti (table 5.6)


def test_the_introduction_states_the_rq1_pages_answer(tiny_book):
    """The introduction shows the very sentences (and figure) the executed RQ1 page made."""
    from camtrap_ssl.studies.book import ANSWER_FIGURE, answer_markdown

    answer = answer_markdown(tiny_book.parent.parent / "studies" / STUDIES["rq1"])
    assert "SSL better than SL" in answer and "Cannot tell" in answer and "Holm 1979" in answer
    intro = (tiny_book / "intro.html").read_text()
    page = _page(tiny_book, "rq1_when")
    first = re.search(r"in \d+ of the \d+ distinct conditions", answer).group(0)
    for text in ("SSL better than SL", "SL better than SSL", "Cannot tell", first):
        assert text in intro and text in page, text
    assert 'href="studies/rq1_when.html"' in intro
    assert re.search(r'<img[^>]+src="[^"]*rq1_answer\.png"', intro), "the answer figure"


def test_published_pages_carry_no_warnings_progress_bars_or_machine_paths(tiny_book):
    from camtrap_ssl.studies.book import output_problems
    from camtrap_ssl.studies.params import ROOT

    studies_dir = tiny_book.parent.parent / "studies"
    tmp_root = tiny_book.parent.parent.parent  # the fixture's folder: runs, caches
    assert len(STUDIES) >= 8  # every page of the book, the own-data page included
    for name in STUDIES.values():
        problems = output_problems(studies_dir / name, paths=[ROOT, tmp_root])
        assert not problems, (name, problems[:5])
