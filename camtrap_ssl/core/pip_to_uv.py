"""pip's configured package sources, as uv's options: the install step of ``make``.

The Makefile installs with uv (``uv pip install``), which lays the 3 GB of torch and its CUDA
libraries into the venv and byte-compiles them in parallel: about half pip's time on 2 cores
(``benchmarks/bench_install.py``). uv does not read pip's configuration, by design; a machine
that points pip at a mirror, a wheel folder or a constraints file (``pip config list``: the files
and the ``PIP_*`` variables) must still install from there. This module runs before anything is
installed, so it imports only the standard library, and it is run as
``python -m camtrap_ssl.core.pip_to_uv``: it prints the uv options, shell-quoted.

pip's semantics are kept: pip takes the best version across all its indexes, uv by default only
the first index that has a package (``--index-strategy unsafe-best-match`` is pip's rule).
The option names follow uv's reference for ``uv pip install`` and pip's for ``pip config``.
"""
from __future__ import annotations

import ast
import shlex
import subprocess
import sys

#: pip's option name -> uv's; values of several items (pip separates them by whitespace) repeat it
OPTIONS: dict[str, str] = {
    "index-url": "--default-index",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraints",
    "cert": "--cert",
    "trusted-host": "--allow-insecure-host",
}
#: the sections pip reads for ``pip install``, later ones overriding earlier ones (":env:" are
#: the PIP_* variables)
SECTIONS: tuple[str, ...] = ("global", "install", ":env:")
_TRUE = {"1", "true", "yes", "on"}


def parse_config(listing: str) -> dict[str, str]:
    """``pip config list``'s lines (``section.key='value'``) -> {key: value}, the sections of
    :data:`SECTIONS` applied in order so that the one pip obeys wins."""
    by_section: dict[str, dict[str, str]] = {}
    for n, line in enumerate(listing.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        section, dot, key = name.rpartition(".")
        if not (sep and dot):
            raise ValueError(f"pip config list, line {n}: expected section.key='value', got {line!r}")
        by_section.setdefault(section, {})[key] = ast.literal_eval(value)
    merged: dict[str, str] = {}
    for section in SECTIONS:
        merged.update(by_section.get(section, {}))
    return merged


def uv_args(config: dict[str, str]) -> list[str]:
    """uv's ``pip install`` options for pip's configuration ``config`` (from :func:`parse_config`)."""
    args = ["--index-strategy", "unsafe-best-match"]
    for key, option in OPTIONS.items():
        for value in config.get(key, "").split():
            args += [option, value]
    if config.get("no-index", "").strip().lower() in _TRUE:
        args.append("--no-index")
    return args


def main() -> None:
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=True,
                             capture_output=True, text=True).stdout
    print(shlex.join(uv_args(parse_config(listing))))


if __name__ == "__main__":
    main()
