"""The OpenAPI 3.1 document of the served API, made from its operations.

Nothing here is written twice: paths, parameters, request bodies and the
success bodies come from the same ``Operation`` list and schemas the server
enforces; every error is Cinder's fault body. Served read-only at
``/openapi.json`` without a token.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from iscsiattach.api import microversion as mv, schemas as sc

if TYPE_CHECKING:
    from iscsiattach.api.app import Operation

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_PATH_SCHEMAS = {"uuid36": {"type": "string", "pattern": "^[0-9a-fA-F-]{36}$"},
                 "project": {"type": "string", "pattern": "^[0-9a-f-]+$"}}
VERSION_HEADER = {
    "name": mv.HEADER, "in": "header", "required": False,
    "description": "The microversion asked for: 'volume 3.N' or 'volume latest'.",
    "schema": {"type": "string",
               "pattern": r"^volume (latest|[1-9][0-9]{0,3}\.(0|[1-9][0-9]{0,3}))$"}}


def document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict] = {}
    for op in operations:
        for path in _paths(op):
            template, params = _template(path)
            paths.setdefault(template, {})[op.method.lower()] = _operation(op, template, params)
    return {
        "openapi": "3.1.0",
        "info": {"title": "iscsiattachd Block Storage API (Cinder v3 subset)",
                 "version": str(mv.MAX),
                 "description": "Volumes and attachments of one iSCSI storage node, "
                                "wire-compatible with Cinder's Block Storage API v3."},
        "paths": paths,
        "components": {
            "schemas": {"Fault": sc.FAULT},
            "securitySchemes": {"token": {"type": "apiKey", "in": "header",
                                          "name": "X-Auth-Token"}}},
    }


def _paths(op: Operation) -> list[str]:
    if not op.path.startswith("/v3"):
        return [op.path]
    return [op.path, "/v3/{project:project}" + op.path[3:]]


def _template(path: str) -> tuple[str, list[dict]]:
    params = [{"name": name, "in": "path", "required": True,
               "schema": _PATH_SCHEMAS.get(kind or "", {"type": "string"})}
              for name, kind in _PARAM.findall(path)]
    return _PARAM.sub(r"{\1}", path), params


def _operation(op: Operation, template: str, path_params: list[dict]) -> dict[str, Any]:
    fault = {"description": "Cinder's fault body",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Fault"}}}}
    responses: dict[str, Any] = {"default": fault}
    success: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": op.response}}
    elif op.name == "metrics":
        success["content"] = {"text/plain": {"schema": {"type": "string"}}}
    responses[str(op.ok)] = success
    for status, schema in op.more_responses.items():
        responses[str(status)] = {"description": "see the body",
                                  "content": {"application/json": {"schema": schema}}}
    query = [{"name": name, "in": "query", "required": False, "schema": schema}
             for name, schema in op.query.items()]
    out: dict[str, Any] = {"operationId": op.method.lower() + _op_id(template),
                           "summary": op.name, "parameters": path_params + query,
                           "responses": responses}
    if op.public:
        out["security"] = []
    else:
        out["security"] = [{"token": []}]
        out["parameters"].append(VERSION_HEADER)
        if op.min_version > mv.MIN:
            out["description"] = f"Needs microversion {op.min_version} or later."
    body = sc.resolve(op.body, mv.MAX)
    if body is not None:
        out["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": body}}}
    return out


def _op_id(template: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", template).rstrip("_") or "_root"
