"""Request and response schemas of the served API, as JSON Schema.

As Cinder's ``api/schemas/``: a request body is checked against its
route's schema before any handler sees it (unknown keys refused, types and
sizes bounded), and the same schemas make the OpenAPI document
(``api.openapi``). Sizes are bounded here so that no value can cost more
than it should: integers in strings have at most 12 digits, lists and
objects at most a few hundred members.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from iscsiattach.api import microversion as mv
from iscsiattach.exception import InvalidInput

BodySchema = dict | Callable[[mv.Version], dict] | None

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID = {"type": "string", "pattern": UUID_PATTERN}
NAME = {"type": ["string", "null"], "maxLength": 255}
# An integer, or its digits as a string (Cinder takes both); never a
# 5,000-digit number that int() refuses.
SIZE = {"oneOf": [{"type": "integer", "maximum": 1 << 40},
                  {"type": "string", "pattern": "^[0-9]{1,12}$"}]}
CONNECTOR = {"type": "object", "maxProperties": 64}


def wrapped(key: str, properties: dict, required: tuple[str, ...] = ()) -> dict:
    """``{key: {...}}``: exactly one top-level key, no unknown keys inside."""
    inner = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        inner["required"] = list(required)
    return {"type": "object", "properties": {key: inner}, "required": [key],
            "additionalProperties": False}


@functools.lru_cache(maxsize=8)     # one schema object per version, validated many times
def attachment_create(version: mv.Version) -> dict:
    props = {"volume_uuid": UUID, "instance_uuid": {"oneOf": [UUID, {"type": "null"}]},
             "connector": {"oneOf": [CONNECTOR, {"type": "null"}]}}
    if version >= mv.ATTACH_MODE:
        props["mode"] = {"enum": ["rw", "ro", None]}
    return wrapped("attachment", props, ("volume_uuid",))


ATTACHMENT_UPDATE = wrapped("attachment", {"connector": dict(CONNECTOR, minProperties=1)},
                            ("connector",))
ATTACHMENT_ACTION = {"type": "object", "properties": {"os-complete": {}},
                     "required": ["os-complete"], "additionalProperties": False}
_NULLABLE = {"type": ["string", "object", "null"], "maxLength": 255, "maxProperties": 64}
VOLUME_CREATE = wrapped("volume", {
    "size": SIZE, "name": NAME, "description": NAME,
    "multiattach": {"type": ["boolean", "null"]},
    "source": {"type": ["string", "null"], "maxLength": 4096},
    **{key: _NULLABLE for key in ("consistencygroup_id", "snapshot_id", "volume_type",
                                  "availability_zone", "imageRef", "source_volid",
                                  "backup_id", "metadata")}}, ("size",))
VOLUME_ACTION = {"type": "object", "properties": {"os-extend": {
    "type": "object", "properties": {"new_size": SIZE}, "required": ["new_size"],
    "additionalProperties": False}}, "required": ["os-extend"], "additionalProperties": False}

QUERY_LIMIT = {"type": "string", "pattern": "^[0-9]{1,9}$"}
QUERY_ID = {"type": "string", "maxLength": 64}
# all_tenants: cinderclient sends it on every list; one node has one tenant.
LIST_QUERY: dict[str, dict] = {"limit": QUERY_LIMIT, "marker": QUERY_ID, "all_tenants": QUERY_ID}
ATTACHMENT_LIST_QUERY: dict[str, dict] = {**LIST_QUERY, "volume_id": QUERY_ID, "status": QUERY_ID,
                         "attach_status": QUERY_ID}

# -- responses (the OpenAPI document's promises; tests hold the server to them) --
FAULT = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}}
_TIME = {"type": ["string", "null"]}
ATTACHMENT_SUMMARY: dict[str, Any] = {
    "type": "object", "required": ["id", "status", "instance", "volume_id"],
    "properties": {"id": UUID, "status": {"type": "string"},
                   "instance": {"type": ["string", "null"]},
                   "volume_id": UUID}}
SESSION = {"type": "object", "required": [
    "volume_id", "target_iqn", "initiator", "addresses", "auth_username", "session_id",
    "state", "attachment_ids", "seen_since"],
    "properties": {"volume_id": UUID, "target_iqn": {"type": "string"},
                   "initiator": {"type": "string"},
                   "addresses": {"type": "array", "items": {"type": "string"}},
                   "auth_username": {"type": ["string", "null"]},
                   "session_id": {"type": "integer"}, "state": {"type": "string"},
                   "attachment_ids": {"type": "array", "items": UUID},
                   "seen_since": {"type": "string"}}}
ATTACHMENT_DETAIL = {"type": "object", "required": [
    "id", "status", "instance", "volume_id", "attached_at", "detached_at", "attach_mode",
    "connection_info"], "properties": {
    **ATTACHMENT_SUMMARY["properties"], "attached_at": {"type": "string"},
    "detached_at": {"type": "string"}, "attach_mode": {"type": "string"},
    "iscsiattach:sessions": {"type": "array", "items": SESSION},
    "connection_info": {"type": "object"}}}
LINKS = {"type": "array", "items": {"type": "object", "required": ["rel", "href"]}}
VOLUME_SUMMARY = {"type": "object", "required": ["id", "name", "links"],
                  "properties": {"id": UUID, "name": {"type": ["string", "null"]},
                                 "links": LINKS}}
VOLUME_DETAIL = {"type": "object", "required": [
    "id", "name", "size", "status", "multiattach", "attachments", "links", "created_at"],
    "properties": {"id": UUID, "name": {"type": ["string", "null"]},
                   "size": {"type": "integer"}, "status": {"type": "string"},
                   "multiattach": {"type": "boolean"}, "links": LINKS,
                   "created_at": _TIME, "updated_at": _TIME,
                   "iscsiattach:backstore": {"enum": [
                       "iblock", "fileio-direct", "fileio-page-cache", None]},
                   "attachments": {"type": "array", "items": {"type": "object"}}}}
SESSION_LIST_QUERY: dict[str, dict] = {"volume_id": QUERY_ID}
VERSIONS = {"type": "object", "required": ["versions"], "properties": {"versions": {
    "type": "array", "items": {"type": "object", "required": [
        "id", "status", "version", "min_version", "links"]}}}}
HEALTH = {"type": "object", "required": ["ready", "last_reconcile", "counts"],
          "properties": {"ready": {"type": "boolean"}, "counts": {"type": "object"},
                         "last_reconcile": {"type": ["object", "null"]},
                         "auth_strategy": {"enum": ["token", "noauth"]}}}


def one(key: str, schema: dict) -> dict:
    return {"type": "object", "required": [key], "properties": {key: schema}}


def many(key: str, schema: dict) -> dict:
    return one(key, {"type": "array", "items": schema})


# -- validation -------------------------------------------------------------------
_VALIDATORS: dict[int, Any] = {}


@functools.lru_cache(maxsize=1)
def _validator_class() -> Any:
    """Draft 2020-12, except that 1.0 is no integer (a size of 1.0 is not one).
    jsonschema is imported on the first request, not at start: it reads its
    metaschemas from disk, and a restore after a reboot should not wait."""
    from jsonschema import Draft202012Validator, validators
    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(Draft202012Validator, type_checker=types)


def _validator(schema: dict) -> Any:
    # Keyed by identity: schemas are module constants, or made per version
    # (attachment_create), which a small cache keeps from piling up.
    found = _VALIDATORS.get(id(schema))
    if found is None or found.schema is not schema:
        if len(_VALIDATORS) > 256:
            _VALIDATORS.clear()
        found = _VALIDATORS[id(schema)] = _validator_class()(schema)
    return found


def resolve(schema: BodySchema, version: mv.Version) -> dict | None:
    return schema(version) if callable(schema) else schema


def validate_body(schema: BodySchema, raw: bytes, version: mv.Version) -> Any:
    """The body's JSON, checked against ``schema`` at ``version``."""
    value = parse_json(raw)
    resolved = resolve(schema, version)
    if resolved is not None:
        _check(resolved, value, "the request body")
    return value


def validate_query(schemas: dict[str, dict], query: dict[str, list[str]]) -> None:
    """Declared parameters checked; any other refused, as Cinder refuses
    filters it does not know (a filter silently ignored lists too much)."""
    unknown = sorted(set(query) - set(schemas))
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:5])
        raise InvalidInput(f"Invalid filters {shown} are found in query options.")
    for name, schema in schemas.items():
        values = query.get(name)
        if values:
            _check(schema, values[-1], f"query parameter {name}")


def _check(schema: dict, value: Any, what: str) -> None:
    from jsonschema.exceptions import best_match
    error = best_match(_validator(schema).iter_errors(value))
    if error is None:
        return
    where = "/".join(str(p) for p in error.absolute_path) or what
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    raise InvalidInput(f"Invalid input for field/attribute {where}. {message}")


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise InvalidInput("a JSON body is required")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
        # A "\ud800" escape decodes to a lone surrogate, which no layer
        # below can store or log as UTF-8: refuse it here, once.
        json.dumps(value, ensure_ascii=False).encode()
        return value
    # RecursionError: nesting deeper than the interpreter's stack ("[" * 5000),
    # which fits in a body of any allowed size. ValueError also covers an
    # integer of more digits than int() converts.
    except (ValueError, UnicodeError, RecursionError):
        raise InvalidInput("Malformed request body") from None


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python's parser takes them."""
    raise ValueError(f"{name} is not JSON")
