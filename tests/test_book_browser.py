"""The published book works offline: Study 4's explorers switch panels in headless Chromium with no
kernel, and every byte the page loads comes from the book's own server, never from a CDN.

The book is served by ``http.server`` on 127.0.0.1, so any request to another host is a CDN (or
other third-party) dependency. Three witnesses are checked: the page's Resource Timing entries,
Chromium's own network log (which also lists requests that failed, as a CDN request does
offline) and the server's log (no vendored file may be missing). ``tiny_book`` comes from
book_fixture.py (via conftest.py); see there for a shortcut that skips executing the notebooks.
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

CDN_MARKERS = ("cdn.", "unpkg", "jsdelivr", "cdnjs", "googleapis")
STUDY4 = "studies/study4_reasoning.html"
LOCAL_HOST = "127.0.0.1"
# a copy of the screenshot for a human to look at; "" keeps only the one under pytest's tmp dir
SCREENSHOT_COPY = os.environ.get("CAMTRAP_SSL_BOOK_SCREENSHOT",
                                 str(Path(tempfile.gettempdir()) / "book_explorer.png"))
STATE_RE = re.compile(r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>',
                      re.S)


def test_vendor_js_refuses_a_static_folder(tmp_path):
    from camtrap_ssl.studies.book import vendor_js

    (tmp_path / "_static").mkdir()
    with pytest.raises(FileExistsError, match="every page"):
        vendor_js(tmp_path, npm_dir=tmp_path / "no-such-dir")
    assert not (tmp_path / "_vendor").exists()


@pytest.mark.slow
def test_built_pages_reference_no_cdn(tiny_book):
    pages = sorted(tiny_book.rglob("*.html")) + sorted(tiny_book.rglob("*.css"))
    assert tiny_book / STUDY4 in pages
    hits = {}
    for page in pages:
        text = page.read_text(encoding="utf-8", errors="replace")
        found = [m for m in CDN_MARKERS if m in text]
        if found:
            hits[str(page.relative_to(tiny_book))] = found
    assert not hits, f"built pages refer to CDN hosts: {hits}"
    # the widget page names the vendored scripts instead
    study4 = (tiny_book / STUDY4).read_text(encoding="utf-8")
    for script in ("requirejs/require.js", "jupyter-widgets/embed-amd.js"):
        assert f'src="../_static/{script}' in study4
        assert (tiny_book / "_static" / script).is_file()


# ------------------------------------------------------------------------------------ explorers
def explorer_panels(html: str) -> list[list[list[str]]]:
    """Per static explorer on the page (in display order): base64 PNG of panel [row][column].

    Follows the structure camtrap_ssl.analysis.explorer builds: VBox(HBox(row, column dropdowns),
    outer Stack of inner Stacks of Images), read from the widget state saved in the page.
    """
    match = STATE_RE.search(html)
    assert match, "no widget state in the page"
    state = json.loads(match.group(1))["state"]

    def model(ref):
        return state[ref.removeprefix("IPY_MODEL_")]

    def png(ref):
        m = model(ref)
        assert m["model_name"] == "ImageModel"
        (buf,) = [b for b in m["buffers"] if b["path"] == ["value"]]
        return buf["data"]

    explorers = []
    for view in re.findall(r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>',
                           html, re.S):
        root = state[json.loads(view)["model_id"]]
        if root["model_name"] != "VBoxModel":
            continue
        outer = model(root["state"]["children"][1])
        assert outer["model_name"] == "StackModel"
        explorers.append([[png(leaf) for leaf in model(inner)["state"]["children"]]
                          for inner in outer["state"]["children"]])
    return explorers


@pytest.fixture(scope="module")
def served_book(tiny_book):
    """Base URL of the book served on 127.0.0.1, and the server's (path, status) log."""
    log: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            log.append((self.path, int(getattr(code, "value", code))))

        def log_message(self, *args):  # keep pytest's output clean
            pass

    server = http.server.ThreadingHTTPServer(
        (LOCAL_HOST, 0), functools.partial(Handler, directory=str(tiny_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOCAL_HOST}:{server.server_port}/", log
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("chromium and chromedriver are not installed (`make browser` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # Chromium's DevTools network events: every request, including ones that failed
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # explicit paths: Selenium Manager never runs (it would try to download a driver)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    yield driver
    driver.quit()


def _not_local(urls) -> list[str]:
    """The URLs that leave the machine: http(s)/ws(s) to any host but 127.0.0.1 (data:, blob: and
    the browser's own chrome:// pages stay inside it)."""
    out = []
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname != LOCAL_HOST:
            out.append(url)
    return out


def _network_requests(driver) -> list[str]:
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


SHOWN_PNG_JS = """
const done = arguments[arguments.length - 1];
const shown = Array.from(arguments[0].querySelectorAll('img'))
    .filter(img => img.getClientRects().length > 0 && img.naturalWidth > 0);
if (shown.length !== 1) { done(`${shown.length} visible images`); return; }
fetch(shown[0].src).then(r => r.arrayBuffer()).then(buf => {
  let s = ''; new Uint8Array(buf).forEach(b => { s += String.fromCharCode(b); });
  done(btoa(s));
}).catch(e => done(String(e)));
"""


@pytest.mark.slow
def test_study4_explorer_switches_panels_offline(browser, served_book, tiny_book, tmp_path):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, server_log = served_book
    panels = explorer_panels((tiny_book / STUDY4).read_text(encoding="utf-8"))
    assert panels, "Study 4 shows no static explorer"
    rows, cols = len(panels[0]), len(panels[0][0])
    assert rows >= 2 and cols >= 2, f"explorer has {rows} x {cols} panels; need 2 x 2 to switch"

    browser.get(base + STUDY4)
    # the HTML manager inserts each rendered view just before its widget-view script
    find_areas = """return Array.from(document.querySelectorAll(
        'script[type="application/vnd.jupyter.widget-view+json"]'))
        .map(s => s.previousElementSibling)
        .filter(el => el && el.classList.contains('widget-subarea') && el.querySelector('select'));"""
    try:
        areas = WebDriverWait(browser, 60).until(
            lambda d: (a := d.execute_script(find_areas)) and len(a) == len(panels) and a)
    except Exception as err:
        raise AssertionError(f"explorers never rendered; requests leaving the machine: "
                             f"{_not_local(_network_requests(browser))}") from err
    area = areas[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", area)

    def shown():
        return browser.execute_async_script(SHOWN_PNG_JS, area)

    assert shown() == panels[0][0][0], "the first panel (row 0, column 0) is not the one shown"
    row_dropdown, col_dropdown = (Select(s) for s in area.find_elements("css selector", "select"))
    steps = [(row_dropdown, 1, (1, 0)), (col_dropdown, 1, (1, 1))]
    before = panels[0][0][0]
    for dropdown, option, (r, c) in steps:
        dropdown.select_by_index(option)
        WebDriverWait(browser, 10).until(lambda _d: shown() == panels[0][r][c],
                                         f"panel ({r}, {c}) never shown after choosing option {option}")
        assert panels[0][r][c] != before  # the picture really changed
        before = panels[0][r][c]
    assert base64.b64decode(before)[:8] == b"\x89PNG\r\n\x1a\n"

    shot = tmp_path / "book_explorer.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if SCREENSHOT_COPY:
        part = Path(SCREENSHOT_COPY + ".part")
        shutil.copyfile(shot, part)
        os.replace(part, SCREENSHOT_COPY)

    resources = browser.execute_script(
        "return performance.getEntriesByType('navigation').concat("
        "performance.getEntriesByType('resource')).map(e => e.name)")
    assert any("/_static/jupyter-widgets/embed-amd.js" in r for r in resources)
    assert any("/_static/requirejs/require.js" in r for r in resources)
    assert not _not_local(resources), f"resources from other hosts: {_not_local(resources)}"
    requests = _network_requests(browser)
    assert any(r.startswith(base) for r in requests)
    assert not _not_local(requests), f"requests to other hosts: {_not_local(requests)}"
    failed = [(p, code) for p, code in server_log if code >= 400 and p != "/favicon.ico"]
    assert not failed, f"local files the page asked for but the book lacks: {failed}"
