"""Where the files the server reads live: the SQL (migrations, named queries) and the pages.

In a checkout they are the top-level ``sql/`` and ``static/`` folders; in an installed wheel they
are shipped inside the package as ``server/sql`` and ``server/static`` (see ``pyproject.toml``,
``force-include``). The Lua scripts sit beside their module (``server/live/scripts``) either way.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from server.core.errors import ConfigError


@cache
def folder(name: str) -> Path:
    """The ``sql`` or ``static`` folder: the installed package's copy, else the checkout's."""
    shipped = Path(str(files("server"))) / name
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    raise ConfigError(f"the server's {name}/ folder is missing (looked in {shipped} and {checkout}): "
                      "reinstall the package (pip install wallboard) or run from a full checkout")


def sql_dir() -> Path:
    return folder("sql")


def static_dir() -> Path:
    return folder("static")
