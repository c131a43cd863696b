"""The OpenAPI 3 document of the HTTP API, made from its table of endpoints (web/api.py), as
/api/v1/openapi.json serves it."""

from __future__ import annotations

from typing import Any

from mfactl.web.api import _STR, ENDPOINTS, MAX_BODY_BYTES, PREFIX

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": _STR, "message": _STR},
        }
    },
}
_STATUS_TEXT = {
    400: "The body is not JSON, or not an object of the fields below with their types.",
    401: "No API key, or not one of server.apiKeys.",
    403: "The API key may not act on this organization (nothing is looked up).",
    404: "No such organization, user or link token.",
    409: "A conflict with the user's state (or a concurrent change got in first: send it again).",
    410: "The link was used up, has expired or was replaced by a newer one.",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
    500: "An unexpected error, or a secret no configured key opens; the server's log says which.",
    503: "The database does not answer.",
}
_EVERY_CALL = (400, 401, 403, 413, 500, 503)


def document() -> dict[str, Any]:
    """The OpenAPI 3 document of ENDPOINTS, as /api/v1/openapi.json serves it."""
    paths: dict[str, Any] = {}
    for e in ENDPOINTS:
        body = {
            "type": "object",
            "required": [f.name for f in e.fields if f.required],
            "properties": {f.name: f.schema() for f in e.fields},
            "additionalProperties": False,
        }
        responses: dict[str, Any] = {
            "200": {
                "description": "The result.",
                "content": {"application/json": {"schema": e.result}},
            }
        }
        for status in sorted({*e.errors, *_EVERY_CALL}):
            responses[str(status)] = {
                "description": _STATUS_TEXT[status],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        paths[f"{PREFIX}/{e.path}"] = {
            "post": {
                "operationId": e.path.replace("/", "_").replace("-", "_"),
                "summary": e.summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body, "example": dict(e.example)}},
                },
                "responses": responses,
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mfactl HTTP API",
            "version": "1",
            "description": "TOTP MFA for a login server: the calls of mfactl.api over JSON.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a key from `mfactl api-key create`, listed in server.apiKeys",
                }
            },
        },
    }
