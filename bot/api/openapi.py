"""The OpenAPI 3.1 document, written from the operation table and the pydantic models that
validate requests and shape responses (their JSON schemas are OpenAPI 3.1 schemas)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bot.api.operations import MAX_ID, OPERATIONS, PREFIX, Operation
from bot.api.schemas import ErrorBody

_REF = "#/components/schemas/{model}"
# One server-sent event: `log` (id = the line's seq, data = a LogLineOut as JSON),
# `status` (data = the deployment with its steps), `end` (data = {"status": …}).
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["log", "status", "end"]},
        "data": {"type": "string", "description": "JSON"},
        "id": {"type": "string", "description": "the log line's seq"},
        "retry": {"type": "integer"},
    },
}
_DESCRIPTIONS = {
    101: "switching to the WebSocket protocol",
    200: "ok",
    201: "created",
    202: "accepted",
    204: "done; no content",
    401: "no token, or an unknown or revoked one",
    403: "the token's scope is too low",
    404: "not found",
    409: "conflicts with the current state",
    422: "invalid input; the message names the field",
}


@cache
def document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for op in OPERATIONS:
        if op.body is not None:
            models.add(op.body)
        models.update(model for model in op.responses.values() if model is not None)
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation" if _is_request(model) else "serialization") for model in models
    ]
    keys, schema = models_json_schema(
        sorted(pairs, key=lambda pair: pair[0].__name__),
        ref_template=_REF,
    )
    refs = {model: keys[model, mode]["$ref"] for model, mode in pairs}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = _operation(op, refs)
    paths[PREFIX + "/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "the OpenAPI document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "click-deploy",
            "version": "1",
            "description": "Deploy services, follow their builds, look after services. "
            "Tokens: `click-deploy token create --name N --scope read|deploy|admin`; "
            "scopes are ordered read < deploy < admin.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _is_request(model: type[BaseModel]) -> bool:
    return any(op.body is model for op in OPERATIONS)


def _operation(op: Operation, refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    if "{id}" in op.path:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            }
        )
    if op.query is not None:
        query_schema = op.query.model_json_schema()
        for name, prop in query_schema.get("properties", {}).items():
            prop = dict(prop)
            description = prop.pop("description", None)
            prop.pop("title", None)
            parameter: dict[str, Any] = {"name": name, "in": "query", "schema": prop}
            if description:
                parameter["description"] = description
            parameters.append(parameter)
    body: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": f"Needs a token of scope {op.scope} or higher."
        + (" A signed page link also opens it." if op.signed_link else ""),
        "tags": ["services" if op.path.startswith("/services") else "deployments"],
    }
    if parameters:
        body["parameters"] = parameters
    if op.body is not None:
        body["requestBody"] = {
            "required": op.method == "POST" and op.path == "/services",
            "content": {"application/json": {"schema": {"$ref": refs[op.body]}}},
        }
    responses: dict[str, Any] = {}
    for status, model in op.responses.items():
        response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "ok")}
        if model is not None:
            content = {"application/json": {"schema": {"$ref": refs[model]}}}
            if op.streams:
                content["text/event-stream"] = {"schema": _SSE_EVENT}
            response["content"] = content
        responses[str(status)] = response
    error = {"application/json": {"schema": {"$ref": refs[ErrorBody]}}}
    for status in sorted({401, 403, *op.errors}):
        responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": error}
    body["responses"] = responses
    return body
