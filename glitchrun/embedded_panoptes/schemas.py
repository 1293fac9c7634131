"""The real server's JSON schemas, one per resource and action, checked with ``jsonschema``.

Transcribed from ``app/schemas/<resource>_{create,update}_schema.rb`` of zooniverse/panoptes (the DSL of
``lib/json_schema.rb``). The json-schema gem reads them without ``$schema``, so as its default draft-06;
``jsonschema``'s Draft6Validator reads the same. Type names the gem does not know (``url``, ``float``)
are always valid there (``TYPE_CLASS_MAPPINGS.fetch(type) { return true }``), so they are here too.
A failure is 422 with the gem's messages gathered as ``lib/json_schema.rb`` ``format_errors_to_hash``
does (field path, ``schema`` for the root; a later error on a field replaces an earlier one), printed as
a Ruby Hash: ``{"schema"=>"did not contain a required property of 'display_name'"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft6Validator, ValidationError
from jsonschema.validators import extend

from glitchrun.embedded_panoptes.errors import ApiError

Schema = dict[str, Any]

ID = {"type": ["string", "integer"]}
IDS = {"type": "array", "items": ID}
STRING, BOOLEAN, INTEGER, OBJECT = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}, {"type": "object"}
STRINGS = {"type": "array", "items": STRING}


def obj(properties: Mapping[str, Any], required: tuple[str, ...] = (), closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if closed:
        schema["additionalProperties"] = False
    if required:
        schema["required"] = list(required)
    return schema


# ------------------------------------------------------------------------------------ projects
_PROJECT = {
    "display_name": STRING, "primary_language": STRING,
    "urls": {"type": "array", "items": obj({"label": STRING, "url": {"type": "url"}}, ("label", "url"), closed=False)},
    "redirect": STRING, "private": BOOLEAN, "mobile_friendly": BOOLEAN, "featured": BOOLEAN,
    "launched_row_order_position": INTEGER, "beta_row_order_position": INTEGER, "launch_approved": BOOLEAN,
    "beta_approved": BOOLEAN, "launch_requested": BOOLEAN, "beta_requested": BOOLEAN, "configuration": OBJECT,
    "title": STRING, "description": STRING, "workflow_description": STRING, "tags": STRINGS, "introduction": STRING,
    "researcher_quote": STRING, "experimental_tools": STRINGS, "run_subject_set_completion_events": BOOLEAN,
}
PROJECT_CREATE = obj({**_PROJECT, "links": obj({
    "owner": obj({"id": ID, "type": STRING}, ("id", "type"), closed=False), "workflows": IDS, "subject_sets": IDS})},
    ("display_name", "description", "primary_language", "private"))
PROJECT_UPDATE = obj({**_PROJECT, "name": STRING, "live": BOOLEAN, "state": STRING,
                      "links": obj({"workflows": IDS, "subject_sets": IDS})})

# ------------------------------------------------------------------------------------ workflows
_WORKFLOW = {
    "pairwise": BOOLEAN, "grouped": BOOLEAN, "active": BOOLEAN, "mobile_friendly": BOOLEAN,
    "public_gold_standard": BOOLEAN, "retirement": obj({"criteria": STRING, "options": OBJECT}),
    "display_order_position": ID, "prioritized": BOOLEAN, "display_name": STRING, "first_task": STRING,
    "tasks": OBJECT, "steps": {"type": "array"}, "configuration": OBJECT,
}
WORKFLOW_CREATE = obj({**_WORKFLOW, "primary_language": STRING, "serialize_with_project": BOOLEAN,
                       "links": obj({"project": ID, "tutorial_subject": ID, "subject_sets": IDS}, ("project",))},
                      ("primary_language", "display_name", "links"))
WORKFLOW_UPDATE = obj({**_WORKFLOW, "links": obj({"tutorial_subject": ID, "subject_sets": IDS, "tutorials": IDS,
                                                  "published_version": ID})})

# ------------------------------------------------------------------------------------ subject sets
SUBJECT_SET_CREATE = obj({"display_name": STRING, "metadata": OBJECT, "expert_set": BOOLEAN, "links": obj(
    {"project": ID, "workflows": IDS, "collection": ID, "subjects": IDS}, ("project",))}, ("links", "display_name"))
SUBJECT_SET_UPDATE = obj({"display_name": STRING, "metadata": OBJECT, "expert_set": BOOLEAN,
                          "links": obj({"workflows": IDS, "subjects": IDS})})

# ------------------------------------------------------------------------------------ subjects
LOCATIONS = {"type": "array", "items": {"oneOf": [STRING, OBJECT]}}
SUBJECT_CREATE = obj({"external_id": STRING, "metadata": OBJECT, "locations": LOCATIONS, "links": obj({
    "project": ID, "subject_sets": IDS,
    "owner": obj({"type": STRING, "id": ID}, closed=False)}, ("project",))}, ("links", "locations"))
SUBJECT_UPDATE = obj({"metadata": OBJECT, "locations": LOCATIONS, "links": obj({"subject_sets": IDS})})

# ------------------------------------------------------------------------------------ classifications
DIGITS = {"type": ["string", "integer"], "pattern": "^[0-9]*$"}
ANNOTATIONS = {"type": "array", "items": obj(
    {"task": STRING, "value": {"type": ["string", "object", "array", "float", "integer"]}}, closed=False)}
_CLASSIFICATION_METADATA = {"screen_resolution": STRING, "started_at": STRING, "finished_at": STRING,
                            "user_language": STRING, "user_agent": STRING, "seen_before": BOOLEAN,
                            "utc_offset": STRING}
CLASSIFICATION_CREATE = obj({
    "completed": BOOLEAN, "gold_standard": BOOLEAN,
    "metadata": obj({**_CLASSIFICATION_METADATA, "workflow_version": STRING},
                    ("started_at", "finished_at", "user_agent", "user_language", "workflow_version"), closed=False),
    "annotations": ANNOTATIONS,
    "links": obj({"project": DIGITS, "workflow": DIGITS, "subjects": {"type": "array", "items": DIGITS}},
                 ("project", "workflow", "subjects")),
}, ("metadata", "annotations", "links"))
CLASSIFICATION_UPDATE = obj({"completed": BOOLEAN, "metadata": obj(_CLASSIFICATION_METADATA, closed=False),
                             "annotations": ANNOTATIONS}, ("annotations",))

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("projects", "create"): PROJECT_CREATE, ("projects", "update"): PROJECT_UPDATE,
    ("workflows", "create"): WORKFLOW_CREATE, ("workflows", "update"): WORKFLOW_UPDATE,
    ("subject_sets", "create"): SUBJECT_SET_CREATE, ("subject_sets", "update"): SUBJECT_SET_UPDATE,
    ("subjects", "create"): SUBJECT_CREATE, ("subjects", "update"): SUBJECT_UPDATE,
    ("classifications", "create"): CLASSIFICATION_CREATE, ("classifications", "update"): CLASSIFICATION_UPDATE,
}

#: the json-schema gem's validator: unknown type names pass, and an ``integer`` is a Ruby Integer (the JSON
#: ``1.0`` parses as a Float and fails, where draft 6 would take it)
Validator = extend(Draft6Validator, type_checker=Draft6Validator.TYPE_CHECKER.redefine_many({
    "url": lambda _checker, _value: True, "float": lambda _checker, _value: True,
    "integer": lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)}))
VALIDATORS = {key: Validator(schema) for key, schema in SCHEMAS.items()}


def require(body: Mapping[str, Any], key: str) -> Any:
    """``params.require(key)``: a missing or empty document is Rails' ParameterMissing, 422."""
    doc = body.get(key)
    if doc in (None, "", {}, []):
        raise ApiError(422, f"param is missing or the value is empty: {key}")
    return doc


def validate(resource: str, action: str, doc: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(attributes, links) of a valid document; 422 with the gem's messages otherwise."""
    errors = sorted(VALIDATORS[resource, action].iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        found: dict[str, str] = {}
        for error in errors:
            field = "/".join(str(p) for p in error.absolute_path) or "schema"
            found[field] = gem_message(error)
        raise ApiError(422, ruby_hash(found))
    return {k: v for k, v in doc.items() if k != "links"}, dict(doc.get("links") or {})


def gem_message(error: ValidationError) -> str:
    """The json-schema gem's wording of one failure (without its ``The property '#/…'`` prefix)."""
    value, schema = error.instance, error.schema
    if error.validator == "required":
        missing = [k for k in error.validator_value if k in error.message.split(" is a required")[0]]
        return f"did not contain a required property of '{missing[-1] if missing else error.message}'"
    if error.validator == "additionalProperties":
        extra = [k for k in value if k not in schema.get("properties", {})]
        return f"contains additional properties {json.dumps(extra)} outside of the schema when none are allowed"
    if error.validator == "type":
        types = error.validator_value
        if isinstance(types, list):
            return f"of type {ruby_type(value)} did not match one or more of the following types: {', '.join(types)}"
        return f"of type {ruby_type(value)} did not match the following type: {types}"
    if error.validator == "pattern":
        return f"value {json.dumps(value)} did not match the regex '{error.validator_value}'"
    if error.validator == "oneOf":
        return f"of type {ruby_type(value)} did not match any of the required schemas"
    return error.message


def ruby_type(value: Any) -> str:
    """``JSON::Validator#type_of_data`` names."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return next(name for kind, name in names.items() if isinstance(value, kind))


def ruby_hash(pairs: Mapping[str, str]) -> str:
    """A Ruby Hash's ``to_s`` (Ruby 3.2): ``{"k"=>"v", ...}``."""
    return "{" + ", ".join(f"{json.dumps(k)}=>{json.dumps(v)}" for k, v in pairs.items()) + "}"
