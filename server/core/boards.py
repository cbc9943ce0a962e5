"""Named wallboard layouts ("boards"): which tiles, which queues, title, language, sound, rotation.

A board is stored as validated JSON in the ``boards`` table (row-level security on the tenant,
sql/013) and served by ``GET|PUT /api/boards`` and ``GET|PUT|DELETE /api/boards/{name}``
(admin writes, supervisor reads). ``wallboard.html#board=NAME`` shows one;
``#boards=a,b&rotate=30`` rotates several. :func:`validate` is the one place that says what a
board may hold; a bad one is a 400 naming the field (``tiles[1].metric``) and what was expected.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from server.core.db import Database, query
from server.core.errors import BadRequest, NotFound

# The figures a tile can show (static/js/board-layout.js draws each one).
TILE_METRICS = ("waiting", "longest_wait", "service_level", "abandon_rate", "asa", "aht", "offered", "answered",
                "abandoned", "agents_available", "agents_on_call", "agents_wrap_up", "agents_break",
                "agents_logged_in")
LANGUAGES = ("en", "de", "fr", "es")
FIELDS = ("title", "tiles", "queues", "locale", "sound", "rotate_s")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
QUEUE_ID = re.compile(r"[^\x00-\x1f]{1,128}")
LOCALE = re.compile(r"([a-z]{2})(-[A-Z]{2})?")
MAX_TILES = 24
MAX_QUEUES = 200
MAX_BOARDS = 200
MAX_TEXT = 120
ROTATE_S = (5, 3600)
DEFAULT_ROTATE_S = 30


def _bad(field: str, reason: str) -> BadRequest:
    return BadRequest(f"{field}: {reason}", code="invalid_board", details={"field": field, "reason": reason})


def _show(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()[:60]
    except orjson.JSONEncodeError:
        return type(value).__name__


def check_name(name: str) -> str:
    """A board's name as it appears in the path and in ``#board=``; 400 when it is not one."""
    if not NAME.fullmatch(name):
        raise _bad("name", f"expected 1-64 letters, digits, '_' or '-', got {_show(name)}")
    return name


def _text(field: str, value: Any, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT or (required and not value.strip()):
        raise _bad(field, f"expected {'a non-empty' if required else 'a'} text of at most {MAX_TEXT} characters, "
                          f"got {_show(value)}")
    return value.strip()


def _queues(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_QUEUES:
        raise _bad(field, f"expected a list of at most {MAX_QUEUES} queue ids, got {_show(value)}")
    for index, queue in enumerate(value):
        if not isinstance(queue, str) or not QUEUE_ID.fullmatch(queue):
            raise _bad(f"{field}[{index}]", f"expected a queue id of 1-128 printable characters, got {_show(queue)}")
    return list(dict.fromkeys(value))


def validate(body: Any) -> dict[str, Any]:
    """A board as stored and served, from a request body; 400 naming the first bad field.

    ``queues`` empty means every queue; a tile's ``queue_ids`` empty means the board's queues.
    """
    if not isinstance(body, dict):
        raise _bad("board", f"expected a JSON object with {', '.join(FIELDS)}, got {_show(body)}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _bad(unknown[0], f"unknown field: expected only {', '.join(FIELDS)}")
    tiles = body.get("tiles")
    if not isinstance(tiles, list) or not 1 <= len(tiles) <= MAX_TILES:
        raise _bad("tiles", f"expected a list of 1 to {MAX_TILES} tiles, got {_show(tiles)}")
    out_tiles = []
    for index, tile in enumerate(tiles):
        where = f"tiles[{index}]"
        if not isinstance(tile, dict):
            raise _bad(where, f'expected an object like {{"metric": "waiting"}}, got {_show(tile)}')
        extra = sorted(set(tile) - {"metric", "queue_ids", "label"})
        if extra:
            raise _bad(f"{where}.{extra[0]}", "unknown field: expected only metric, queue_ids, label")
        if tile.get("metric") not in TILE_METRICS:
            raise _bad(f"{where}.metric", f"expected one of {', '.join(TILE_METRICS)}, got {_show(tile.get('metric'))}")
        out_tiles.append({"metric": tile["metric"], "queue_ids": _queues(f"{where}.queue_ids", tile.get("queue_ids")),
                          "label": _text(f"{where}.label", tile.get("label"))})
    locale = body.get("locale") or ""
    if locale:
        match = LOCALE.fullmatch(locale) if isinstance(locale, str) else None
        if not match or match.group(1) not in LANGUAGES:
            raise _bad("locale", f"expected a language of {', '.join(LANGUAGES)} (optionally with a region, "
                                 f"e.g. de-CH), or empty for the browser's, got {_show(locale)}")
    sound = body.get("sound", False)
    if not isinstance(sound, bool):
        raise _bad("sound", f"expected true or false, got {_show(sound)}")
    rotate = body.get("rotate_s", DEFAULT_ROTATE_S)
    if isinstance(rotate, bool) or not isinstance(rotate, int) or not ROTATE_S[0] <= rotate <= ROTATE_S[1]:
        raise _bad("rotate_s", f"expected whole seconds {ROTATE_S[0]}..{ROTATE_S[1]}, got {_show(rotate)}")
    return {"title": _text("title", body.get("title"), required=True), "tiles": out_tiles,
            "queues": _queues("queues", body.get("queues")), "locale": locale, "sound": sound, "rotate_s": rotate}


def validate_all(body: Any) -> dict[str, dict[str, Any]]:
    """Every board of a ``PUT /api/boards`` body (an object of name → board)."""
    if not isinstance(body, dict) or len(body) > MAX_BOARDS:
        raise _bad("boards", f"expected an object of at most {MAX_BOARDS} boards by name, got {_show(body)}")
    out = {}
    for name, board in body.items():
        check_name(name)
        try:
            out[name] = validate(board)
        except BadRequest as exc:
            field = f"{name}.{exc.details['field']}"
            raise _bad(field, exc.details["reason"]) from None
    return out


class BoardStore:
    """Reads and writes a tenant's boards in its own (RLS) transactions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, tenant: str) -> list[dict[str, Any]]:
        async with self.db.tenant(tenant) as conn:
            rows = await conn.fetch(query("boards_list"), tenant)
        return [_row(r) for r in rows]

    async def get(self, tenant: str, name: str) -> dict[str, Any]:
        async with self.db.tenant(tenant) as conn:
            row = await conn.fetchrow(query("boards_get"), tenant, check_name(name))
        if row is None:
            raise NotFound(f'no board named "{name}": create it with PUT /api/boards/{name} (admin)',
                           code="board_not_found")
        return _row(row)

    async def put(self, tenant: str, name: str, board: dict[str, Any], by: str) -> dict[str, Any]:
        async with self.db.tenant(tenant) as conn:
            row = await conn.fetchrow(query("boards_put"), tenant, name, orjson.dumps(board).decode(), by)
        return _row(row)

    async def replace(self, tenant: str, boards: dict[str, dict[str, Any]], by: str) -> list[dict[str, Any]]:
        """Every board of the tenant becomes exactly ``boards`` (one transaction)."""
        async with self.db.tenant(tenant) as conn:
            await conn.execute(query("boards_clear"), tenant, list(boards))
            for name, board in boards.items():
                await conn.execute(query("boards_put"), tenant, name, orjson.dumps(board).decode(), by)
            rows = await conn.fetch(query("boards_list"), tenant)
        return [_row(r) for r in rows]

    async def delete(self, tenant: str, name: str) -> None:
        async with self.db.tenant(tenant) as conn:
            gone = await conn.fetchval(query("boards_delete"), tenant, check_name(name))
        if gone is None:
            raise NotFound(f'no board named "{name}" to delete: GET /api/boards lists them', code="board_not_found")


def _row(row: Any) -> dict[str, Any]:
    layout = row["layout"]
    board = orjson.loads(layout) if isinstance(layout, str | bytes) else dict(layout)
    return {"name": row["name"], **board, "updated_at": row["updated_at"].isoformat().replace("+00:00", "Z"),
            "updated_by": row["updated_by"]}
