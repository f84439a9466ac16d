"""The README's two commands on a fresh machine (book/reproduce.md, "From a fresh clone"): the
Makefile's install logic and the book's JavaScript, run against stub executables (nothing on this
machine is installed or removed).

Each Makefile test runs the real ``make`` with ``PATH`` set to a folder of stubs only, so what
is "installed" is exactly what the test puts there, whatever this machine has; the stub
``apt-get`` records its arguments instead of installing."""
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from range_http import FaultServer

from camtrap_ssl.studies import book

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def stubs(folder: Path, present: list[str], root: bool = True) -> Path:
    """A PATH folder holding ``present`` (each logs its call), ``id`` and a logging apt-get."""
    folder.mkdir()
    log = folder / "calls.log"
    for name in present + ["apt-get"]:
        (folder / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
    (folder / "id").write_text(f"#!/bin/sh\necho {0 if root else 1000}\n")
    for p in folder.iterdir():
        p.chmod(0o755)
    return log


def make(target: str, path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "-s", "-C", str(ROOT), target, *args],
                          env={"PATH": str(path), "HOME": os.environ.get("HOME", "/tmp")},
                          capture_output=True, text=True, timeout=60)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_chromium_absent_node_present_installs_only_chromium(tmp_path):
    log = stubs(tmp_path / "bin", ["node", "npm"])
    out = make("browser", tmp_path / "bin")
    assert out.returncode == 0, out.stderr
    installs = [c for c in calls(log) if c.startswith("apt-get install")]
    assert installs == ["apt-get install -y -qq --no-install-recommends chromium chromium-driver"]
    assert not any("npm" in c.split()[1:] for c in calls(log) if c.startswith("apt-get"))


def test_no_node_at_all_still_installs_only_chromium(tmp_path):
    log = stubs(tmp_path / "bin", ["chromium"])
    assert make("browser", tmp_path / "bin").returncode == 0
    assert [c for c in calls(log) if c.startswith("apt-get install")] == \
        ["apt-get install -y -qq --no-install-recommends chromium-driver"]


def test_everything_present_installs_nothing_and_non_root_only_says_what_is_missing(tmp_path):
    log = stubs(tmp_path / "bin", ["chromium", "chromedriver"])
    assert make("browser", tmp_path / "bin").returncode == 0
    assert calls(log) == []
    log = stubs(tmp_path / "bin2", [], root=False)
    out = make("browser", tmp_path / "bin2")
    assert out.returncode == 0 and calls(log) == []
    assert "missing: chromium chromium-driver" in out.stdout


def test_make_book_needs_no_node(tmp_path):
    log = stubs(tmp_path / "bin", [])  # no node, no npm, no chromium
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    cli = venv / "bin" / "camtrap-ssl"
    cli.write_text(f'#!/bin/sh\necho "camtrap-ssl $*" >> "{log}"\n')
    cli.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: the venv is current
    out = make("book", tmp_path / "bin", f"VENV={venv}", "PROFILE=tiny")
    assert out.returncode == 0, out.stdout + out.stderr
    assert calls(log) == ["camtrap-ssl book --profile tiny --seed 0 --precision auto"]


def tarball(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("package/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_js_packages_come_from_the_registry_without_npm(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)  # no node, no npm anywhere
    tgz = tarball({"dist/embed-amd.js": b"define('x', [], 1);", "package.json": b"{}"})
    with FaultServer({"@jupyter-widgets/html-manager/-/html-manager-1.0.15.tgz": tgz}) as srv:
        folder = book.fetch_package("@jupyter-widgets/html-manager", "1.0.15", sri(tgz),
                                    tmp_path / "npm", registry=srv.url)
        assert (folder / "dist" / "embed-amd.js").read_bytes() == b"define('x', [], 1);"
        n = len(srv.log)
        assert book.fetch_package("@jupyter-widgets/html-manager", "1.0.15", sri(tgz),
                                  tmp_path / "npm", registry=srv.url) == folder
        assert len(srv.log) == n  # verified and unpacked once: no second request
        with pytest.raises(ValueError, match="does not match package-lock.json"):
            book.fetch_package("@jupyter-widgets/html-manager", "1.0.15", sri(b"other"),
                               tmp_path / "npm2", registry=srv.url)
    assert not list((tmp_path / "npm2").glob("*.tgz"))  # a tampered tarball is not kept


def test_lock_pins_every_vendored_package():
    pins = book.pinned_packages(ROOT)
    assert set(pins) == {package for package, *_ in book.VENDORED.values()}
    lock = json.loads((ROOT / "package-lock.json").read_text())
    package_json = json.loads((ROOT / "package.json").read_text())
    for package, (version, integrity) in pins.items():
        assert package_json["dependencies"][package] == version
        assert integrity == lock["packages"][f"node_modules/{package}"]["integrity"]


def test_missing_python3_venv_is_installed_then_the_venv_built(tmp_path):
    """Debian's python3 without python3-venv: ``python3 -m venv`` fails until apt installs it."""
    log = stubs(tmp_path / "bin", [])
    ready = tmp_path / "python3-venv-installed"
    (tmp_path / "bin" / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $*" >> "{log}"\n'
        f'case "$*" in *python3-venv*) touch "{ready}";; esac\n')
    for tool in ("touch", "mkdir", "chmod"):  # coreutils the recipe and the stubs use
        (tmp_path / "bin" / tool).symlink_to(shutil.which(tool))
    venv = tmp_path / "venv"
    (tmp_path / "bin" / "python3").write_text(
        f'#!/bin/sh\necho "python3 $*" >> "{log}"\n[ -f "{ready}" ] || exit 1\n'
        f'mkdir -p "{venv}/bin"\n'
        f'printf \'#!/bin/sh\\necho "venv-python $*" >> "{log}"\\n\' > "{venv}/bin/python"\n'
        f'printf \'#!/bin/sh\\necho "venv-uv $*" >> "{log}"\\n\' > "{venv}/bin/uv"\n'
        f'chmod +x "{venv}/bin/python" "{venv}/bin/uv"\n')
    (tmp_path / "bin" / "python3").chmod(0o755)
    out = make(f"{venv}/.installed", tmp_path / "bin", f"VENV={venv}")
    assert out.returncode == 0, out.stdout + out.stderr
    got = calls(log)
    assert got[0] == f"python3 -m venv {venv}"  # tried first, failed
    assert "apt-get install -y -qq python3-venv" in got
    assert got.index("apt-get install -y -qq python3-venv") < got.index(f"python3 -m venv {venv}", 1)
    # uv installs, told pip's configured sources (the stub python prints none), byte code kept
    assert "venv-python -m pip install --quiet uv" in got
    assert "venv-python -m camtrap_ssl.core.pip_to_uv" in got
    assert f"venv-uv pip install --python {venv}/bin/python --compile-bytecode -e .[test]" in got
    assert (venv / ".installed").exists()
