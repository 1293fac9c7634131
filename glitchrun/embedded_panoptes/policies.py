"""Who may see and change what: the real server's project policies, as SQL conditions.

``app/policies/project_policy.rb``: the read scope (index, show) is every public project plus the private
ones where the caller holds one of ``READ_ROLES``; the write scope (update, destroy, links, exports,
retirement) is only the projects where the caller is owner or collaborator, public or not. Workflows,
subject sets and subjects follow their project (``workflow_policy.rb``, ``subject_set_policy.rb``,
``subject_policy.rb``: ``where(project_id: policy_for(Project).scope_for(action))``). Admins see everything.
The owner of a project always holds ``owner`` (the real server writes that role when it makes the project;
``owner_id`` is checked too so that stores made before roles existed keep working).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from glitchrun.embedded_panoptes.errors import ApiError

READ_ROLES = ("owner", "collaborator", "tester", "translator", "scientist", "moderator")
WRITE_ROLES = ("owner", "collaborator")
#: ``Project::EXPERT_ROLES``: who may submit gold-standard classifications
EXPERT_ROLES = ("owner", "expert")


def project_scope(viewer: sqlite3.Row | None, roles: tuple[str, ...], public: bool,
                  alias: str = "p") -> tuple[str, list[Any]]:
    """(SQL condition on the projects table aliased ``alias``, its parameters) for ``viewer``."""
    if viewer is not None and viewer["admin"]:
        return "1", []
    public_clause = f"{alias}.private = 0"
    if viewer is None:
        return (public_clause if public else "0"), []
    held = (f"({alias}.owner_id = ? OR EXISTS (SELECT 1 FROM project_roles r, json_each(r.roles) j "
            f"WHERE r.project_id = {alias}.id AND r.user_id = ? AND j.value IN (SELECT value FROM json_each(?))))")
    params: list[Any] = [viewer["id"], viewer["id"], json.dumps(list(roles))]
    return (f"({public_clause} OR {held})" if public else held), params


def readable(viewer: sqlite3.Row | None) -> tuple[str, list[Any]]:
    return project_scope(viewer, READ_ROLES, public=True)


def writable(viewer: sqlite3.Row | None) -> tuple[str, list[Any]]:
    return project_scope(viewer, WRITE_ROLES, public=False)


def in_scope(db: sqlite3.Connection, scope: tuple[str, list[Any]], project_id: int) -> sqlite3.Row | None:
    """The project if it is in ``scope``."""
    clause, params = scope
    return db.execute(f"SELECT * FROM projects p WHERE p.id = ? AND {clause}", (project_id, *params)).fetchone()


def not_linkable(kind: str) -> ApiError:
    """``JsonApiController::NotLinkable`` (``lib/json_api_controller/relation_manager.rb``): 422."""
    return ApiError(422, f"Couldn't find linked {kind} for current user")
