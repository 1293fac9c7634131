"""HTTP conventions every API route shares (panoptes-api.md §1): envelope, ETag, paging, filters, errors.

The pitfalls of §11 live here once: string ids, ``next_href`` relative and carrying every filter, an
ETag on every successful GET and POST, ``If-Match`` compared with the record's ETag, comma lists and
repeated keys, JSON error bodies with 4xx statuses (a 5xx would cost a client ~40 s of retries).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.media import Media
from glitchrun.embedded_panoptes.rules import Rules
from glitchrun.embedded_panoptes.store import Store, id_list

JSON_TYPE = "application/vnd.api+json; charset=utf-8"
WRITE_TYPES = ("application/json", "application/vnd.api+json")
#: query parameters the real server ignores for filtering (``search`` is used by projects only)
IGNORED_PARAMS = frozenset({"admin", "http_cache", "include", "sort", "page", "page_size", "search"})
DEFAULT_PAGE_SIZE = 20


def error_response(status: int, message: str) -> Response:
    return json_response({"errors": [{"message": message}]}, status)


def json_response(body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None,
                  etag: str | None = None) -> Response:
    """A JSON response; successful ones carry an ETag: ``etag`` (a record ETag) or the hash of the body
    (``json_api_render.rb`` ``generate_response_obj_etag``, what lists answer)."""
    data = json.dumps(body, ensure_ascii=False).encode()
    response = Response(data, status=status, content_type=JSON_TYPE, headers=dict(headers or {}))
    if status in (200, 201):
        response.headers["ETag"] = etag or f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
    return response


def envelope(key: str, resources: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one shape of every answer: the resource list, top-level links and ``meta[key]``."""
    if meta is None:
        meta = {"page": 1, "page_size": len(resources), "count": len(resources), "include": [],
                "page_count": 1, "previous_page": None, "next_page": None, "first_href": None,
                "previous_href": None, "next_href": None, "last_href": None}
    return {key: resources, "links": {}, "meta": {key: meta}}


# ----------------------------------------------------------------------------------------- requests
def arg_values(name: str, split: bool = True) -> list[str]:
    """Every value of a query parameter: repeated keys, and comma lists with spaces when ``split``."""
    values = request.args.getlist(name)
    if not split:
        return [v for v in values if v != ""]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def to_id(value: Any, what: str) -> int:
    """An id sent as an integer or a decimal string (the CLI and client send both)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ApiError(422, f"{what} must be an id (an integer or a string of digits), not {value!r}")
    return int(str(value).strip())


def to_ids(values: Iterable[Any], what: str) -> list[int]:
    return [to_id(v, what) for v in values]


def to_flag(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    raise ApiError(422, f"{what} must be true or false, not {value!r}")


def json_body() -> dict[str, Any]:
    """The request's JSON object (415 for another media type, 422 for anything but an object)."""
    content_type = (request.mimetype or "").lower()
    if content_type not in WRITE_TYPES:
        raise ApiError(415, f"Content-Type must be application/json, not {content_type or 'missing'!r}")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object")
    return body


def resource_body(key: str) -> dict[str, Any]:
    """``{"<key>": {...}}``, the body of a resource create or update."""
    doc = json_body().get(key)
    if not isinstance(doc, dict):
        raise ApiError(422, f'the request body must be {{"{key}": {{...}}}}')
    return doc


def record_etag(table: str, rows: Iterable[sqlite3.Row]) -> str:
    """The ETag of records, from their ids and ``updated_at`` (``lib/json_api_controller.rb`` ``gen_etag``:
    the records' cache keys): what a show or a create answers, and what an update or delete must send."""
    key = "/".join(f"{table}/{r['id']}-{r['updated_at']}" for r in rows)
    return f'"{hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()}"'


def require_if_match(table: str, row: sqlite3.Row) -> None:
    """``lib/json_api_controller/precondition_check.rb``: 428 without If-Match, 412 when it is not the
    record's current ETag (weak ``W/`` ones compared as such). A list's ETag is the hash of the whole
    response, so an object read from a list is stale for an update, as on the real server."""
    given = request.headers.get("If-Match")
    if not given:
        raise ApiError(428, "Request requires If-Match header to be present")
    current = record_etag(table, [row])
    if given != (f"W/{current}" if given.startswith("W/") else current):
        raise ApiError(412, "JsonApiController::PreconditionFailed")


# ----------------------------------------------------------------------------------------- listing
@dataclass
class Query:
    """``SELECT <alias>.* <source> WHERE ...`` built up by filters, then counted and paged."""

    source: str
    alias: str
    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def where(self, clause: str, *params: Any) -> Query:
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def _sql(self, select: str) -> str:
        where = " AND ".join(self.clauses) or "1"
        return f"SELECT {select} {self.source} WHERE {where}"

    def count(self, db: sqlite3.Connection) -> int:
        return db.execute(self._sql("COUNT(*)"), self.params).fetchone()[0]

    def rows(self, db: sqlite3.Connection, limit: int = -1, offset: int = 0) -> list[sqlite3.Row]:
        sql = self._sql(f"{self.alias}.*") + f" ORDER BY {self.alias}.id LIMIT ? OFFSET ?"
        return db.execute(sql, [*self.params, limit, offset]).fetchall()


@dataclass(frozen=True)
class Filter:
    """One query parameter's SQL condition; ``sql`` holds one ``?``.

    ``ids``: a JSON array of ids (use ``IN (SELECT value FROM json_each(?))``); ``texts``: a JSON array of
    strings from a comma list (logins); ``text``: the same without splitting on commas (display names
    may hold commas); ``flag``: 0 or 1.
    """

    sql: str
    kind: str = "ids"

    def apply(self, query: Query, name: str) -> None:
        values = arg_values(name, split=self.kind != "text")
        if not values:
            return
        if self.kind == "ids":
            query.where(self.sql, id_list(to_ids(values, f"{name} filter")))
        elif self.kind == "flag":
            query.where(self.sql, int(to_flag(values[-1], f"{name} filter")))
        else:
            query.where(self.sql, json.dumps(values))


def apply_filters(query: Query, filters: Mapping[str, Filter]) -> None:
    """Apply the request's filters; ``xxx_ids`` means ``xxx_id`` and ``ids`` means ``id``."""
    for name in request.args:
        if name in IGNORED_PARAMS:
            continue
        canonical = "id" if name == "ids" else name[:-1] if name.endswith("_ids") else name
        if canonical in filters:  # like the real server, an unknown parameter filters nothing
            filters[canonical].apply(query, name)


def page_bounds(max_page_size: int) -> tuple[int, int]:
    """The requested page (from 1) and page size (at most ``max_page_size``)."""
    try:
        page = int(request.args.get("page", 1))
        size = int(request.args.get("page_size", DEFAULT_PAGE_SIZE))
    except ValueError:
        raise ApiError(422, "page and page_size must be integers") from None
    if page < 1 or size < 1:
        raise ApiError(422, "page and page_size must be at least 1")
    return page, min(size, max_page_size)


def page_meta(key: str, count: int, page: int, size: int) -> dict[str, Any]:
    """Paging meta whose hrefs are relative, without ``/api``, and repeat every filter (§1.3)."""
    page_count = max(1, -(-count // size))
    path = request.path.removeprefix("/api")
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "page_size")]

    def href(number: int | None) -> str | None:
        if number is None:
            return None
        return f"{path}?{urlencode([('page', number), ('page_size', size), *kept])}"

    previous_page = page - 1 if page > 1 else None
    next_page = page + 1 if page < page_count else None
    return {"page": page, "page_size": size, "count": count, "include": [], "page_count": page_count,
            "previous_page": previous_page, "next_page": next_page, "first_href": href(1),
            "previous_href": href(previous_page), "next_href": href(next_page), "last_href": href(page_count)}


# ----------------------------------------------------------------------------------------- views
@dataclass
class Ctx:
    """What a view works with: the open transaction, the caller (None = anonymous), the URL the caller
    used (absolute media URLs are built from it) and the media store."""

    db: sqlite3.Connection
    viewer: sqlite3.Row | None
    base_url: str
    media: Media
    rules: Rules

    def require_viewer(self) -> sqlite3.Row:
        if self.viewer is None:
            raise ApiError(401, "You must be logged in to access this resource.")
        return self.viewer


def api_view(
    store: Store, viewer_of: Callable[[sqlite3.Connection], sqlite3.Row | None], media: Media, rules: Rules
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Decorate ``fn(ctx, **url_args) -> Response`` so that it runs inside one store transaction."""

    def decorate(fn: Callable[..., Response]) -> Callable[..., Response]:
        @wraps(fn)
        def view(**url_args: Any) -> Response:
            with store.tx() as db:
                ctx = Ctx(db=db, viewer=viewer_of(db), base_url=request.host_url.rstrip("/"), media=media,
                          rules=rules)
                return fn(ctx, **url_args)

        return view

    return decorate
