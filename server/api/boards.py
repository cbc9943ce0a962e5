"""`GET|PUT /api/boards`, `GET|PUT|DELETE /api/boards/{name}`: named wallboard layouts (admin writes, supervisor reads)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import audit
from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import ADMIN, READ_ALL, Principal
from server.core.boards import BoardStore, check_name, validate, validate_all
from server.core.errors import BadRequest


def _store(request: Request) -> BoardStore:
    return BoardStore(services(request).db)


async def _json(request: Request, expected: str) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc}): send {expected}", code="invalid_json") from None


def _by(who: Principal) -> str:
    return who.sub or who.role.value


async def list_boards(request: Request) -> Response:
    """``GET /api/boards`` (supervisor, admin): every board of the tenant, by name."""
    who = principal(request, READ_ALL)
    return success(await _store(request).list(who.tenant))


async def replace_boards(request: Request) -> Response:
    """``PUT /api/boards`` (admin): the tenant's boards become exactly the body's (name → board); audited."""
    who = principal(request, ADMIN)
    boards = validate_all(await _json(request, "an object of boards by name"))
    data = await _store(request).replace(who.tenant, boards, _by(who))
    await audit.request_entry(request, who, "boards.replace", {"names": sorted(boards)})
    return success(data)


async def get_board(request: Request) -> Response:
    """``GET /api/boards/{name}`` (supervisor, admin): one board; 404 when there is none."""
    who = principal(request, READ_ALL)
    return success(await _store(request).get(who.tenant, request.path_params["name"]))


async def put_board(request: Request) -> Response:
    """``PUT /api/boards/{name}`` (admin): create or replace one board; audited with what it now holds."""
    who = principal(request, ADMIN)
    name = check_name(request.path_params["name"])
    board = validate(await _json(request, "a board object (title, tiles, queues, locale, sound, rotate_s)"))
    data = await _store(request).put(who.tenant, name, board, _by(who))
    await audit.request_entry(request, who, "boards.put", {"name": name, "board": board})
    return success(data)


async def delete_board(request: Request) -> Response:
    """``DELETE /api/boards/{name}`` (admin): remove one board; audited; 404 when there is none."""
    who = principal(request, ADMIN)
    name = request.path_params["name"]
    await _store(request).delete(who.tenant, name)
    await audit.request_entry(request, who, "boards.delete", {"name": name})
    return success({"name": name, "deleted": True})


routes = [
    Route("/api/boards", list_boards, methods=["GET"]),
    Route("/api/boards", replace_boards, methods=["PUT"]),
    Route("/api/boards/{name}", get_board, methods=["GET"]),
    Route("/api/boards/{name}", put_board, methods=["PUT"]),
    Route("/api/boards/{name}", delete_board, methods=["DELETE"]),
]
