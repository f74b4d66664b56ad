"""A non-editable install (``pip install .``, the container image) holds every package of the repository:
the ``[tool.setuptools.packages.find]`` patterns find each folder with an ``__init__.py`` (a subpackage they
missed installed without it, and the worker failed at its first import)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_installed() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = set(find_packages(str(ROOT), include=find["include"]))
    packages = {".".join(p.parent.relative_to(ROOT).parts) for top in ("streams", "sinks", "schemas")
                for p in (ROOT / top).rglob("__init__.py") if "vendor" not in p.parts}
    assert packages - found == set()
    assert {"schemas.formats", "streams.collect", "streams.engine"} <= found
