"""A tiny-profile build of the book, made once per test session (fixture ``tiny_book``).

Building it means executing every study notebook on the ``tiny`` profile with papermill (about ten
minutes on two cores) and rendering the book with Jupyter Book (about 20 s). While developing,
set ``CAMTRAP_SSL_TEST_BOOK_STUDIES`` to a folder of notebooks already executed that way (e.g. the
``studies/`` folder of an earlier tiny build: ``camtrap_ssl.studies.book.run_studies("tiny", 0, runs_root,
output_dir=...)``): they are copied instead of executed, so only the rendering runs. Those
notebooks show the code of the day they ran; leave the variable unset to test the current one.

Import the fixture where it is needed (``from book_fixture import tiny_book``); the build is
cached in this module, so several importers still share one build.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ENV_STUDIES = "CAMTRAP_SSL_TEST_BOOK_STUDIES"


def build_tiny_book(tmp_root: str | os.PathLike) -> Path:
    """Copy ``book/`` into ``tmp_root/book``, execute the studies on the tiny profile into it (or
    copy them from ``$CAMTRAP_SSL_TEST_BOOK_STUDIES``), render it; return its HTML folder."""
    # imported here: conftest imports this module in every session, and camtrap_ssl.studies.book
    # pulls in torch
    from camtrap_ssl.studies.book import BOOK, VENDOR, build_html, run_studies
    from camtrap_ssl.studies.params import STUDIES

    tmp_root = Path(tmp_root)
    book = tmp_root / "book"
    if book.exists():
        raise FileExistsError(f"{book} exists; build_tiny_book needs a fresh tmp_root")
    source = os.environ.get(ENV_STUDIES)
    if source:  # checked before any copying: a typo must not cost a full build
        missing = [n for n in STUDIES.values() if not (Path(source) / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{ENV_STUDIES}={source} lacks the executed notebooks {missing}; "
                                    "unset it to execute the studies")
    # generated or executed content stays behind
    shutil.copytree(BOOK, book, ignore=shutil.ignore_patterns(
        "_build", VENDOR, ".vendor-*", "*.ipynb", "build_record.json", ".ipynb_checkpoints",
        "rq1_answer.md", "rq1_answer.png"))
    studies = book / "studies"
    studies.mkdir(exist_ok=True)
    if source:
        for name in [*STUDIES.values(), "build_record.json"]:
            if (Path(source) / name).is_file():
                shutil.copy2(Path(source) / name, studies / name)
    else:
        # The kernels inherit this environment, and ipykernel shows figures inline only when
        # MPLBACKEND is unset: conftest's MPLBACKEND=Agg would leave every page without figures.
        saved = os.environ.pop("MPLBACKEND", None)
        try:
            run_studies("tiny", 0, str(tmp_root / "runs"), output_dir=studies)
        finally:
            if saved is not None:
                os.environ["MPLBACKEND"] = saved
    return build_html(book)


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory) -> Path:
    """The HTML folder (``.../book/_build/html``) of a tiny-profile book, built once per session."""
    if "html" not in _BUILT:
        _BUILT["html"] = build_tiny_book(tmp_path_factory.mktemp("tiny_book"))
    return _BUILT["html"]
