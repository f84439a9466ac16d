"""Progress bars: shown where a caller asks, hidden by ``show=False`` and by ``TQDM_DISABLE``.

The book sets ``TQDM_DISABLE=1`` for its kernels so that no published page carries a bar. tqdm
reads that variable as a default, which an argument in the call overrides, and ``tqdm.notebook``
(what ``tqdm.auto`` gives in a kernel) always passes one: the world-generation and decoding bars
showed on the demo book's gallery, RQ1 and Study 3 pages. Each check runs in a fresh process.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import camtrap_ssl

PACKAGE = Path(camtrap_ssl.__file__).parent


def _stderr(code: str, tqdm_disable: str | None, tmp_path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    env["CAMTRAP_SSL_CACHE"] = str(tmp_path / "cache")
    if tqdm_disable is not None:
        env["TQDM_DISABLE"] = tqdm_disable
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_a_bar_shows_unless_the_caller_or_the_environment_hides_it(tmp_path):
    code = ("from camtrap_ssl.core.progress import progress_bar\n"
            "for show in (True, False):\n"
            "    list(progress_bar(range(3), show=show, desc=f'bar-{show}'))\n")
    shown = _stderr(code, None, tmp_path)
    assert "bar-True" in shown and "bar-False" not in shown
    assert "bar-" not in _stderr(code, "1", tmp_path)


def test_the_notebook_bar_is_hidden_by_the_environment_too(tmp_path):
    """``tqdm.notebook`` ignores ``TQDM_DISABLE`` on its own; the package's bar does not."""
    pytest.importorskip("ipywidgets")
    code = ("import tqdm.auto, tqdm.notebook\n"
            "tqdm.auto.tqdm = tqdm.notebook.tqdm  # as in a Jupyter kernel\n"
            "from camtrap_ssl.core.progress import progress_bar\n"
            "import sys\n"
            "print(progress_bar(range(3), show=True).disable,\n"
            "      tqdm.notebook.tqdm(range(3)).disable, file=sys.stderr)\n")
    assert _stderr(code, "1", tmp_path).split()[-2:] == ["True", "False"]
    assert _stderr(code, None, tmp_path).split()[-2:] == ["False", "False"]


def test_world_generation_shows_its_bar_only_where_tqdm_is_not_disabled(tmp_path):
    """The bar that reached the published pages: a world of 500 frames or more."""
    code = ("from camtrap_ssl.data import synthetic\n"
            "synthetic.camtrap_world('serengeti', 'tiny', n_images=500)\n")
    assert "serengeti frames" in _stderr(code, None, tmp_path)
    assert "frames" not in _stderr(code, "1", tmp_path / "again")


def test_every_bar_of_the_package_is_made_where_the_environment_can_hide_it():
    """No ``tqdm(...)`` call anywhere in the package but the one in ``core.progress``:
    ``progress_bar(show=...)`` instead."""
    offenders, calls = [], 0
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "func", None)
            name = getattr(name, "id", getattr(name, "attr", ""))
            if isinstance(node, ast.Call) and name == "tqdm":
                calls += 1
                if path.name != "progress.py":
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert calls > 0  # the walk finds tqdm calls at all (progress.py's)
    assert offenders == []


def test_disable_is_refused_where_it_would_override_the_environment():
    from camtrap_ssl.core.progress import progress_bar
    with pytest.raises(TypeError, match="show="):
        progress_bar(range(3), disable=False)
