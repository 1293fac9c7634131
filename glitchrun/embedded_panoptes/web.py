"""HTTP conventions every API route shares (panoptes-api.md §1): envelope, ETag, paging, filters, errors.

The pitfalls of §11 live here once: string ids, ``next_href`` relative and carrying every filter, an
ETag on every successful GET and POST, ``If-Match`` compared with the record's ETag, comma lists and
repeated keys, JSON error bodies with 4xx statuses (a 5xx would cost a client ~40 s of retries).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Response, request

from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.media import Media
from glitchrun.embedded_panoptes.rules import Rules
from glitchrun.embedded_panoptes.store import Store

JSON_TYPE = "application/vnd.api+json; charset=utf-8"
#: ``app/controllers/api/api_controller.rb`` ``API_ACCEPTED_CONTENT_TYPES``
WRITE_TYPES = ("application/json", "application/vnd.api+json")
#: ``config/routes.rb``: the API is routed by this Accept value (versionist's header strategy: contained in Accept)
VERSIONED_ACCEPT = "application/vnd.api+json; version=1"
#: ``lib/content_type_filter.rb``: the methods that may come without a body
BODILESS_METHODS = frozenset({"GET", "DELETE", "HEAD", "OPTIONS"})


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
def to_id(value: Any, what: str) -> int:
    """An id sent as an integer or a decimal string (the CLI and client send both)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ApiError(422, f"{what} must be an id (an integer or a string of digits), not {value!r}")
    return int(str(value).strip())


def to_ids(values: Iterable[Any], what: str) -> list[int]:
    return [to_id(v, what) for v in values]


class RouteNotFound(Exception):
    """No route of the real server matches (``application_controller.rb`` ``unknown_route``)."""


def not_routed() -> Response:
    """``ApplicationController#unknown_route``: 404 ``Not Found``, as JSON to a JSON client, else the HTML page."""
    if "json" in request.headers.get("Accept", ""):
        return error_response(404, "Not Found")
    return Response("<html><body><h1>The page you were looking for doesn't exist.</h1></body></html>", 404,
                    content_type="text/html; charset=utf-8")


def check_request() -> None:
    """What the real server checks before any controller code: the versioned Accept header its API routes
    match on (without it no route matches: 404), then ``ContentTypeFilter`` (a prepended before_action):
    every POST and PUT, with a body or not, must be JSON (415)."""
    if VERSIONED_ACCEPT not in request.headers.get("Accept", ""):
        raise RouteNotFound()
    if request.method not in BODILESS_METHODS and (request.mimetype or "").lower() not in WRITE_TYPES:
        raise ApiError(415, f"Only requests with Content-Type: {' or '.join(WRITE_TYPES)} are allowed")


def json_body() -> dict[str, Any]:
    """The request's JSON object (422 for anything but an object; its media type was checked before)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object")
    return body


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

    def rows(self, db: sqlite3.Connection, limit: int = -1, offset: int = 0, order: str = "") -> list[sqlite3.Row]:
        """The rows in ``order`` (SQL terms), ties (and no order) by id."""
        by = f"{order}, {self.alias}.id" if order else f"{self.alias}.id"
        sql = self._sql(f"{self.alias}.*") + f" ORDER BY {by} LIMIT ? OFFSET ?"
        return db.execute(sql, [*self.params, limit, offset]).fetchall()


def last_arg(name: str) -> str | None:
    """A query parameter as Rails reads it: of repeated keys (``a=1&a=2``) the last one counts."""
    values = request.args.getlist(name)
    return values[-1] if values else None


def ruby_to_i(text: str | None) -> int:
    """Ruby's ``String#to_i``: the leading integer (``" 12abc"`` -> 12), 0 when there is none."""
    found = re.match(r"\s*([+-]?\d+(?:_\d+)*)", text or "")
    return int(found.group(1).replace("_", "")) if found else 0


def ruby_split(text: str) -> list[str]:
    """Ruby's ``text.split(',')``: items kept as they are (no stripping), trailing empty items dropped."""
    items = text.split(",")
    while items and items[-1] == "":
        items.pop()
    return items


#: ActiveModel's boolean cast: these are false, any other non-empty value true
FALSE_VALUES = frozenset({"0", "f", "F", "false", "FALSE", "off", "OFF"})
#: ActiveModel's numeric check: a string that does not start like a number matches no integer column
NUMERIC = re.compile(r"\s*[+-]?\d")


@dataclass(frozen=True)
class Filter:
    """One filter parameter's SQL condition; ``sql`` holds one ``?``, given a JSON array of the values.

    Every filter value is a comma list, split as restpack_serializer splits it
    (``RestPack::Serializer::Options#filters_from_params``: ``params[key].to_s.split(',')``, nothing
    stripped), so a display name holding a comma never matches itself. ``kind``: ``ids`` (cast as
    ActiveRecord casts integers: leading integer, non-numbers match nothing), ``text`` or ``flag``
    (ActiveModel's boolean cast). ``href``: the name the paging hrefs repeat it under (the serializer's
    filter name), or None for filters a controller applies itself and drops from the params.
    """

    sql: str
    kind: str = "ids"
    href: str | None = ""

    def values(self, raw: str) -> list[Any]:
        items = ruby_split(raw)
        if self.kind == "ids":
            return [ruby_to_i(v) for v in items if NUMERIC.match(v)]
        if self.kind == "flag":
            return [int(v not in FALSE_VALUES) for v in items if v != ""]
        return items


def apply_filters(query: Query, filters: Mapping[str, Filter]) -> dict[str, list[str]]:
    """Apply the request's filters; returns what the paging hrefs repeat, by name.

    ``filterable_by`` reads both ``name`` and ``names`` (the plural wins: ``ids``, ``project_ids``); a filter
    given empty (``display_name=``) matches nothing, as ``where(display_name: [])`` does. Unknown parameters
    filter nothing (restpack ignores them)."""
    kept: dict[str, list[str]] = {}
    for name, rule in filters.items():
        raw = last_arg(f"{name}s") if last_arg(f"{name}s") is not None else last_arg(name)
        if raw is None:
            continue
        query.where(rule.sql, json.dumps(rule.values(raw)))
        if rule.href is not None:
            kept[rule.href or name] = ruby_split(raw)
    return kept


#: ``config/initializers/restpack_serializer.rb``: the page size when none is asked for
DEFAULT_PAGE_SIZE = 20
#: Kaminari's ``default_per_page``: the page size of a negative ``page_size``
KAMINARI_DEFAULT_PER_PAGE = 25
#: ``json_api_responses.rb`` ``kaminari_zero_page``
ZERO_PAGE = "Current page was incalculable. Perhaps you supplied 'page_size: 0' as a param?"


@dataclass
class Listing:
    """How an index is paged, sorted and side-loaded, read from the request as restpack_serializer reads it
    (``Options``, ``Paging``; Kaminari 1.2 ``page(n).per(size)``), and the paging hrefs it gives back
    (``lib/serialization/panoptes_restpack.rb`` ``page_href``)."""

    page: int  # Kaminari's current page: ``page`` below 1 or not a number is page 1
    limit: int  # rows per page: ``page_size`` capped at the kind's maximum; negative: Kaminari's default
    size_param: int  # ``page_size`` as asked (Ruby ``to_i``), what the hrefs repeat
    includes: list[str] = field(default_factory=list)
    sorting: list[tuple[str, bool]] = field(default_factory=list)  # (attribute, descending)
    filters: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, max_page_size: int, sortable: Mapping[str, str] = {}, default_sort: str = "") -> Listing:
        raw_size = last_arg("page_size")
        size = ruby_to_i(raw_size) if raw_size is not None else DEFAULT_PAGE_SIZE
        if size == 0:
            raise ApiError(422, ZERO_PAGE)
        limit = KAMINARI_DEFAULT_PER_PAGE if size < 0 else size
        page = max(1, ruby_to_i(last_arg("page"))) if last_arg("page") is not None else 1
        includes = ruby_split(last_arg("include") or "")
        sorting: list[tuple[str, bool]] = []
        for term in ruby_split(last_arg("sort") or default_sort):
            name = term.removeprefix("-").lower()
            if name in sortable and name not in dict(sorting):
                sorting.append((name, term.startswith("-")))
        return cls(page, min(limit, max_page_size), size, includes, sorting)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def order(self, sortable: Mapping[str, str]) -> str:
        """The ORDER BY terms of the sorting (``reorder``): each attribute's SQL expression."""
        return ", ".join(f"{sortable[name]} {'DESC' if desc else 'ASC'}" for name, desc in self.sorting)

    def href(self, path: str, number: int | None) -> str | None:
        """``page=`` unless 1, ``page_size=`` unless the default, ``include=``, ``sort=``, then the filters by
        name, each ``name=v1,v2``: written as the real server writes them, not URL-encoded."""
        if number is None:
            return None
        params = [f"page={number}"] if number != 1 else []
        if self.size_param != DEFAULT_PAGE_SIZE:
            params.append(f"page_size={self.size_param}")
        if self.includes:
            params.append(f"include={','.join(self.includes)}")
        if self.sorting:
            params.append("sort=" + ",".join(f"-{n}" if desc else n for n, desc in self.sorting))
        params += [f"{name}={','.join(values)}" for name, values in sorted(self.filters.items())]
        return f"{path}?{'&'.join(params)}" if params else path

    def meta(self, path: str, count: int) -> dict[str, Any]:
        """restpack's ``serialize_meta`` over Kaminari's page: no previous page on the first page or past the
        last, no next page on the last or past it; ``page_count`` 0 when nothing matches."""
        page_count = -(-count // self.limit)
        beyond = self.page > page_count
        previous_page = None if self.page == 1 or beyond else self.page - 1
        next_page = None if self.page == page_count or beyond else self.page + 1
        return self._hrefs(path, {"page": self.page, "page_size": self.limit, "count": count,
                                  "include": self.includes, "page_count": page_count,
                                  "previous_page": previous_page, "next_page": next_page})

    def no_count_meta(self, path: str, any_rows: bool) -> dict[str, Any]:
        """``app/serializers/concerns/no_count_serializer.rb``: no totals; the next page while this one has rows."""
        return self._hrefs(path, {"page": self.page, "page_size": self.limit, "count": 0, "include": self.includes,
                                  "page_count": 0, "previous_page": self.page - 1,
                                  "next_page": self.page + 1 if any_rows else None})

    def _hrefs(self, path: str, meta: dict[str, Any]) -> dict[str, Any]:
        return {**meta, "first_href": self.href(path, 1), "previous_href": self.href(path, meta["previous_page"]),
                "next_href": self.href(path, meta["next_page"]), "last_href": self.href(path, meta["page_count"])}


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
            check_request()
            with store.tx() as db:
                ctx = Ctx(db=db, viewer=viewer_of(db), base_url=request.host_url.rstrip("/"), media=media,
                          rules=rules)
                return fn(ctx, **url_args)

        return view

    return decorate
