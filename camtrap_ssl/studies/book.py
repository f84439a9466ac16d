"""Build the Jupyter Book: execute every study notebook with papermill, then render the outputs.

The book never executes a notebook itself (``execute_notebooks: off``); it shows what papermill
ran with recorded parameters, so every figure on a page traces back to a run.

The built book loads nothing from a CDN: it must work offline (a laptop in the field, a mirror
without internet) and must not depend on third-party hosts staying up. :func:`vendor_js` copies
require.js, the ipywidgets HTML manager (it renders Study 4's explorers from their saved widget
state, without a kernel) and MathJax out of the npm packages pinned in the repository's
``package-lock.json`` (fetched as tarballs from the npm registry by Python: no Node.js needed)
into ``book/_vendor``; ``_config.yml`` serves that folder as static files
and points myst-nb's ``nb_ipywidgets_js`` and Sphinx's ``mathjax_path`` at the copies.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from camtrap_ssl.core import download as dl
from camtrap_ssl.core import fileio, paths, provenance
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, get_profile
from camtrap_ssl.experiments.checks import check_choice
from camtrap_ssl.experiments.parallel import profile_workers
from camtrap_ssl.models.utils import PRECISIONS
from camtrap_ssl.studies import budget
from camtrap_ssl.studies.params import ROOT, SEEDED_STUDIES, STUDIES, execute_study, notebook_parameters

BOOK = ROOT / "book"
EXECUTED = BOOK / "studies"
# Not ``_static``: Jupyter Book 1 adds every .js file under a book's ``_static`` to *every* page,
# which would load require.js and MathJax everywhere and the widget manager twice on widget pages.
VENDOR = "_vendor"
# name under _static/ -> (npm package, folder inside it, glob patterns of the files or folders
# copied from there). embed-amd.js bundles @jupyter-widgets/base and /controls (the ipywidgets 8
# models) as named AMD modules, so require.js resolves them without fetching; its CSS refers to
# Font Awesome files (hashed names) beside it. MathJax finds its fonts and lazily loaded parts
# relative to its own script, hence the folders copied beside tex-mml-chtml.js.
VENDORED = {
    "requirejs": ("requirejs", "", ["require.js"]),
    "jupyter-widgets": ("@jupyter-widgets/html-manager", "dist",
                        ["embed-amd.js", "*.woff2", "*.woff", "*.ttf", "*.eot", "*.svg"]),
    "mathjax": ("mathjax", "es5", ["tex-mml-chtml.js", "input/tex/extensions",
                                   "output/chtml/fonts", "ui"]),
}
# The CSS bundled in embed-amd.js asks for its fonts relative to the require.js URLs of the
# modules defined there ("@jupyter-widgets/base", ".../html-manager/dist/libembed-amd"), which by
# default resolve against the page (studies/@jupyter-widgets/<font>: 404);
# window.__jupyter_widgets_assets_path__ is read too late for that CSS. Mapping those module paths
# onto the vendored folder fixes it. Pages load this between require.js and embed-amd.js
# (``nb_ipywidgets_js`` in _config.yml).
REQUIRE_CONFIG_JS = ("jupyter-widgets/require-config.js", """\
// Written by camtrap_ssl.studies.book.vendor_js: the ipywidgets HTML manager finds its fonts beside
// embed-amd.js (this folder) instead of at a path guessed relative to the page.
(function () {
  var here = new URL("./", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here;
  var folder = here.replace(/\\/$/, "");
  window.require.config({paths: {"@jupyter-widgets": folder,
                                 "@jupyter-widgets/html-manager/dist": folder}});
})();
""")


def check_precision(precision: str) -> str:
    """The book's ``precision``: one of ``PRECISIONS`` (refused here, before any study starts)."""
    return check_choice(precision, "precision", PRECISIONS)


def run_studies(profile: str = DEFAULT_PROFILE, seed: int = 0, runs_root: str | None = None,
                studies=tuple(STUDIES), output_dir: Path = EXECUTED, seeds=None,
                precision: str = "auto") -> dict:
    """Execute the notebooks in order (1 and 2 train the runs that 3 and 4 reuse).

    Every study runs over ``seeds`` (default: the profile's ``finetune_seeds``), so Studies 3 and
    4 analyse the very pairs Studies 1 and 2 trained; ``seed`` draws the worlds gallery.
    ``precision`` other than ``auto`` is every run's (``run_options``): ``fp32`` measures on a CPU
    with native bf16 what a CPU without it takes.
    """
    seeds = list(seeds if seeds is not None else get_profile(profile).finetune_seeds)
    check_precision(precision)
    timings = {}
    # A published page carries no progress bars: the kernels inherit TQDM_DISABLE (tqdm reads its
    # defaults from TQDM_* variables; core.progress makes every bar of the package so that the
    # variable hides it), while this process prints one line per study.
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        _run_each(studies, profile, seed, seeds, precision, runs_root, output_dir, timings)
    finally:
        if saved is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved
    fileio.atomic_write_json(output_dir / "build_record.json",
                           {"profile": profile, "seed": seed, "seeds": seeds, "seconds": timings,
                            **provenance.environment()})
    return timings


def _run_each(studies, profile, seed, seeds, precision, runs_root, output_dir, timings) -> None:
    for number in studies:
        params = {"profile": profile}
        params.update({"seeds": seeds} if number in SEEDED_STUDIES else {"seed": seed})
        if precision != "auto" and "run_options" in notebook_parameters(number):
            params["run_options"] = {"precision": precision}
        if number != "worlds" and runs_root is not None:  # else the notebooks resolve it
            params["runs_root"] = str(runs_root)
        t0 = time.time()
        print(f"[book] study {number}: {STUDIES[number]}", flush=True)
        execute_study(number, output_dir, progress=False, **params)
        timings[STUDIES[number]] = round(time.time() - t0, 1)


def jupyter_book_executable() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book")


REGISTRY = "https://registry.npmjs.org/"
PACKAGE_DEADLINE = 600.0  # seconds per tarball (MathJax's is the largest, ~5 MB)


def pinned_packages(npm_dir: Path = ROOT) -> dict[str, tuple[str, str]]:
    """``package -> (version, integrity)`` of the vendored packages, from ``package-lock.json``.

    The lock stays the one place the versions are pinned (``npm install X@v`` updates it), but
    nothing here runs npm: the three packages the book copies from are fetched directly.
    """
    lock = Path(npm_dir) / "package-lock.json"
    if not lock.is_file():
        raise FileNotFoundError(f"{lock} not found: the book's JavaScript packages are pinned there")
    entries = json.loads(lock.read_text()).get("packages", {})
    pins = {}
    for package, *_ in VENDORED.values():
        entry = entries.get(f"node_modules/{package}", {})
        if not entry.get("version") or not str(entry.get("integrity", "")).startswith("sha512-"):
            raise ValueError(f"{lock}: no version and sha512 integrity for {package!r}; run "
                             f"`npm install --package-lock-only {package}` to pin it")
        pins[package] = (entry["version"], entry["integrity"])
    return pins


def fetch_package(package: str, version: str, integrity: str, cache: Path,
                  registry: str | None = None) -> Path:
    """The unpacked npm tarball of ``package@version`` (its ``package/`` folder), from the cache
    or fetched from the npm registry (``$npm_config_registry``, as npm itself reads it, else
    registry.npmjs.org) and checked against the lock's sha512 ``integrity`` before unpacking.

    Why not ``npm ci``: it needs Node.js and npm, which a fresh machine may lack (or have in a
    combination Debian's ``npm`` package conflicts with), and it installs the whole dependency
    tree (hundreds of packages) to copy files out of three. A tarball is a prebuilt release, so
    nothing is built or run; extraction uses tarfile's ``data`` filter (no absolute paths, links
    out of the folder or device files).
    """
    registry = registry or os.environ.get("npm_config_registry") or REGISTRY
    registry = registry if registry.endswith("/") else registry + "/"
    cache = Path(cache)
    stem = f"{package.replace('/', '+')}-{version}"
    folder, marker = cache / stem, cache / stem / ".integrity"
    if marker.is_file() and marker.read_text().strip() == integrity:
        return folder
    tgz = cache / f"{stem}.tgz"
    url = f"{registry}{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"
    try:
        dl.fetch(url, tgz, timeout=PACKAGE_DEADLINE, stall=30)
    except dl.NETWORK_ERRORS as e:
        raise FileNotFoundError(f"could not fetch {package}@{version} for the book's JavaScript "
                                f"({e}). Fetch {url} on a machine with internet and put it at "
                                f"{tgz}, or set npm_config_registry to a mirror") from None
    got = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    if got != integrity:
        tgz.unlink()
        raise ValueError(f"{url}: integrity {got[:24]}... does not match package-lock.json's "
                         f"{integrity[:24]}...; the download was deleted")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{stem}-"))
    try:
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / "package" / ".integrity").write_text(integrity + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp / "package", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def vendor_js(book_dir: Path = BOOK, npm_dir: Path = ROOT) -> Path:
    """Copy the JavaScript the book serves itself into ``book_dir/_vendor``; return that folder.

    The folder is filled beside the old one and swapped in, so an interrupted copy never leaves a
    half-filled folder that a later build would serve.
    """
    book_dir = Path(book_dir)
    if (book_dir / "_static").exists():
        raise FileExistsError(f"{book_dir / '_static'} exists: Jupyter Book would then add every .js "
                              f"file of all static folders, the vendored ones in {VENDOR}/ included, "
                              "to every page; put custom files in another folder listed in "
                              "sphinx.config.html_static_path and name them in html_css_files / "
                              "html_js_files")
    cache = paths.cache_dir() / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    unpacked = {package: fetch_package(package, version, integrity, cache)
                for package, (version, integrity) in pinned_packages(npm_dir).items()}
    sources = {}
    for name, (package, base, patterns) in VENDORED.items():
        folder = unpacked[package] / base
        for pattern in patterns:
            found = sorted(folder.glob(pattern))
            if not found:
                raise FileNotFoundError(f"{folder / pattern} missing from npm package {package!r}: "
                                        "package-lock.json pins a release laid out differently")
            sources.update({Path(name) / src.relative_to(folder): src for src in found})
    target = book_dir / VENDOR
    tmp = Path(tempfile.mkdtemp(dir=book_dir, prefix=".vendor-"))
    try:
        for rel, src in sources.items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        (tmp / REQUIRE_CONFIG_JS[0]).write_text(REQUIRE_CONFIG_JS[1])
        old = book_dir / f".vendor-old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# The RQ1 page's answer, copied into the book's introduction (intro.md includes this file), so
# the introduction states exactly the sentences the executed page wrote from its intervals.
ANSWER = "rq1_answer.md"


def answer_markdown(notebook: Path) -> str:
    """The Markdown output of the executed notebook's cell tagged ``answer``."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        if "answer" in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                text = out.get("data", {}).get("text/markdown")
                if text:
                    return "".join(text) if isinstance(text, list) else text
    raise ValueError(f"{notebook}: no cell tagged 'answer' with a Markdown output; was it executed?")


# The RQ1 page's answer figure (its cell is tagged ``answer-figure``), copied beside the answer.
ANSWER_FIGURE = "rq1_answer.png"


def answer_figure_png(notebook: Path) -> bytes | None:
    """The PNG output of the executed notebook's cell tagged ``answer-figure`` (None: none)."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        if "answer-figure" in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                png = out.get("data", {}).get("image/png")
                if png:
                    return base64.b64decode("".join(png) if isinstance(png, list) else png)
    return None


def write_answer(notebook: Path, out: Path) -> Path:
    """Write the answer of the executed RQ1 ``notebook`` to ``out`` (atomically), naming its page;
    its answer figure, where the page drew one, goes beside it (:data:`ANSWER_FIGURE`) and is shown
    above the sentences."""
    out = Path(out)
    png = answer_figure_png(notebook)
    figure = ""
    if png is not None:
        fileio.atomic_write_bytes(out.with_name(ANSWER_FIGURE), png)
        figure = (f"![RQ1's answer at a glance: one row per distinct condition, SSL minus SL top-1 "
                  f"with its simultaneous interval]({ANSWER_FIGURE})\n\n")
    text = (figure + answer_markdown(notebook) + "\n\nFrom the executed page "
            "{doc}`studies/rq1_when`, where every condition has its table, plot and runs.\n")
    return fileio.atomic_write_bytes(out, text.encode())


# What a published page must not show: a stream to stderr, a warning, a progress bar, or a path
# of the machine that built it (the repository, a temporary or home folder).
TQDM_BAR = re.compile(r"[\u2588\u258f\u258e\u258d\u258c\u258b\u258a\u2589]|\d+%\||it/s\]")
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:tmp|home|root|work|Users|var|private|mnt)/")
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def output_problems(notebook: Path, paths=()) -> list[str]:
    """Everything in the outputs of an executed notebook that a published page must not carry:
    ``stderr`` streams, the word "Warning", tqdm progress bars, absolute machine paths (``/tmp/``,
    ``/home/``... and each of ``paths``, e.g. the repository and the runs folder). Images and
    embedded ``data:`` URIs are not read (base64 can spell anything). One line per problem."""
    nb = json.loads(Path(notebook).read_text())
    paths = [str(p) for p in paths if str(p) not in ("", "/")]
    problems = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            texts = []
            if kind == "stream":
                if out.get("name") == "stderr":
                    problems.append(f"cell {i}: a stderr stream")
                texts.append(out.get("text", ""))
            elif kind == "error":
                problems.append(f"cell {i}: an error ({out.get('ename')})")
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    texts.append(value)
            for text in texts:
                text = DATA_URI.sub("", "".join(text) if isinstance(text, list) else text)
                found = ["Warning"] if "Warning" in text else []
                found += ["a progress bar"] if TQDM_BAR.search(text) else []
                found += ["a machine path"] if MACHINE_PATH.search(text) else []
                found += [f"the path {p}" for p in paths if p in text]
                problems += [f"cell {i}: {f}: {text.strip()[:120]!r}" for f in found]
    return problems


def build_html(book_dir: Path = BOOK, npm_dir: Path = ROOT) -> Path:
    """Render ``book_dir`` with Jupyter Book 1.x into ``book_dir/_build/html``.

    ``npm_dir`` holds the ``package.json`` / ``package-lock.json`` of the JavaScript the pages
    serve (:func:`vendor_js`); a book copied elsewhere (tests) still takes it from the repository.
    """
    book_dir = Path(book_dir)
    missing = [f"studies/{name}" for name in STUDIES.values() if not (book_dir / "studies" / name).exists()]
    if missing:
        raise FileNotFoundError(f"executed notebooks missing in {book_dir}: {missing}; "
                                "run the studies first (camtrap-ssl book without --skip-studies)")
    write_answer(book_dir / "studies" / STUDIES["rq1"], book_dir / "studies" / ANSWER)
    vendor_js(book_dir, npm_dir)
    subprocess.run([jupyter_book_executable(), "build", str(book_dir), "--quiet"], check=True)
    html = book_dir / "_build" / "html"
    return html


def print_build_estimate(profile: str = DEFAULT_PROFILE, runs_root: str | None = None,
                         seeds=None, precision: str = "auto") -> dict | None:
    """Print what :func:`run_studies` will train and about how long it takes here (a few timed
    fine-tuning steps, :mod:`camtrap_ssl.studies.budget`); return the estimate. An estimate that
    fails says so in one line and never stops the build."""
    try:
        plan = budget.book_plan(profile, seeds, runs_root)
        return budget.print_estimate(plan, budget.calibrate(profile, precision,
                                                            workers=profile_workers(profile)))
    except Exception as e:  # the estimate is advice: the build goes on without it
        print(f"[book] no estimate ({type(e).__name__}: {e})", flush=True)
        return None


def build_book(profile: str = DEFAULT_PROFILE, seed: int = 0, run_studies_first: bool = True,
               runs_root: str | None = None, precision: str = "auto") -> Path:
    check_precision(precision)
    if run_studies_first:  # --skip-studies only renders: nothing to estimate
        print_build_estimate(profile, runs_root, precision=precision)
        run_studies(profile, seed, runs_root, precision=precision)
    html = build_html()
    print(json.dumps({"html": str(html / "index.html")}))
    return html
