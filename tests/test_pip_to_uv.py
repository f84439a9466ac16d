"""The install hands pip's configured package sources to uv (camtrap_ssl.core.pip_to_uv)."""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camtrap_ssl.core.pip_to_uv import OPTIONS, parse_config, uv_args

ROOT = Path(__file__).resolve().parents[1]

LISTING = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'
global.find-links='/opt/wheels'
global.index-url='https://mirror.example/simple'
install.index-url='https://install-section.example/simple'
:env:.constraint='/etc/pip-constraints.txt'
:env:.find-links='/srv/wheels /srv/more-wheels'
"""


def test_sections_apply_in_pips_order_and_items_repeat_the_option():
    config = parse_config(LISTING)
    assert config["index-url"] == "https://install-section.example/simple"  # install over global
    assert config["find-links"] == "/srv/wheels /srv/more-wheels"  # PIP_* over the files
    args = uv_args(config)
    assert args[:2] == ["--index-strategy", "unsafe-best-match"]  # pip's best match over indexes
    pairs = list(zip(args[2::2], args[3::2]))
    assert pairs == [("--default-index", "https://install-section.example/simple"),
                     ("--extra-index-url", "file:///opt/a/simple"),
                     ("--extra-index-url", "file:///opt/b/simple"),
                     ("--find-links", "/srv/wheels"),
                     ("--find-links", "/srv/more-wheels"),
                     ("--constraints", "/etc/pip-constraints.txt"),
                     ("--cert", "/etc/ssl/certs/ca-certificates.crt")]


def test_no_configuration_means_uvs_defaults_and_no_index_carries_over():
    assert uv_args(parse_config("")) == ["--index-strategy", "unsafe-best-match"]
    assert uv_args(parse_config("global.no-index='true'\n"))[-1] == "--no-index"
    assert "--no-index" not in uv_args(parse_config("global.no-index='false'\n"))


def test_a_line_pip_would_not_print_is_named():
    with pytest.raises(ValueError, match="line 2: expected section.key='value'"):
        parse_config("global.find-links='/opt/wheels'\nnonsense\n")


def test_runs_before_anything_is_installed_and_reads_the_pip_variables():
    """The Makefile runs it with the fresh venv's python: the standard library only."""
    env = {"PATH": os.environ["PATH"], "PIP_FIND_LINKS": "/srv/a /srv/b",
           "PIP_CONFIG_FILE": os.devnull}  # only the variable, not this machine's files
    out = subprocess.run([sys.executable, "-S", "-m", "camtrap_ssl.core.pip_to_uv"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert shlex.split(out.stdout) == ["--index-strategy", "unsafe-best-match",
                                       "--find-links", "/srv/a", "--find-links", "/srv/b"]


@pytest.mark.skipif(shutil.which("uv", path=str(Path(sys.executable).parent)) is None,
                    reason="uv is not in this venv (the Makefile installs it)")
def test_every_option_is_one_uv_knows():
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    helptext = subprocess.run([uv, "pip", "install", "--help"], capture_output=True, text=True,
                              check=True).stdout
    for option in [*OPTIONS.values(), "--index-strategy", "--no-index", "--compile-bytecode"]:
        assert f"{option} " in helptext or f"{option}\n" in helptext, option
    assert "unsafe-best-match" in helptext
