"""Request bodies, paths and query strings of the REST API, checked."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from aiohttp import web

from tessera.config.validation import check_name

from .errors import ErrorCode, RestError, bad_request

# Room options with many custom layouts stay far below this; anything bigger is a mistake.
MAX_BODY_BYTES = 256 * 1024
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100
MAX_PATCH_OPERATIONS = 32
MAX_ID_LENGTH = 128


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body; RestError (400) saying what is wrong with it."""
    if not raw.strip():
        raise bad_request("Request body is empty: expected JSON")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise bad_request("Request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise bad_request(f"Request body is not valid JSON: {exc}") from None


def expect_object(data: Any, what: str = "Request body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise bad_request(f"{what} must be a JSON object, not {json_type(data)}")
    return data


def expect_patch(data: Any) -> list[dict[str, Any]]:
    """A JSON-patch array: 1..MAX_PATCH_OPERATIONS objects with op, path and value."""
    if not isinstance(data, list):
        raise bad_request(
            f"Request body must be a JSON array of patch operations, not {json_type(data)}"
        )
    if not data:
        raise bad_request("Request body is an empty list of patch operations")
    if len(data) > MAX_PATCH_OPERATIONS:
        raise bad_request(f"At most {MAX_PATCH_OPERATIONS} patch operations are accepted")
    operations = []
    for index, item in enumerate(data):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where}: a patch operation must be an object")
        unknown = sorted(set(item) - {"op", "path", "value"})
        if unknown:
            raise bad_request(f"{where}.{unknown[0]}: unknown field (expected op, path, value)")
        for field in ("op", "path"):
            if not isinstance(item.get(field), str):
                raise bad_request(f"{where}.{field}: a string is required")
        if "value" not in item:
            raise bad_request(f"{where}.value: a value is required")
        operations.append(item)
    return operations


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def checked_name(value: Any, field: str) -> str:
    try:
        return check_name(value, field)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def parse_paging(query: Any) -> tuple[int, int] | None:
    if "page" not in query and "per_page" not in query:
        return None
    values: dict[str, int] = {}
    for field, default, upper in (
        ("page", 1, 1_000_000),
        ("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
    ):
        text = query.get(field)
        if text is None:
            values[field] = default
            continue
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= upper:
            raise bad_request(f"{field} must be an integer from 1 to {upper}")
        values[field] = int(text)
    return values["page"], values["per_page"]


def loggable(text: str, limit: int = 300) -> str:
    """``text`` shortened, with control characters escaped: a client cannot forge log lines."""
    text = text[:limit]
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def path_id(request: web.Request, name: str, code: ErrorCode, what: str) -> str:
    value = request.match_info[name]
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise RestError(404, code, f"{what} not found")
    return value


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; RestError 413 beyond MAX_BODY_BYTES, 400 if it is not JSON."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise bad_request(f"Request body is larger than {MAX_BODY_BYTES} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise bad_request(f"Request body is larger than {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    return parse_json_body(b"".join(chunks))
