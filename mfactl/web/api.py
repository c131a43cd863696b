"""The HTTP API, /api/v1: the library's calls (``mfactl.api.Mfa``) over JSON, for login servers
not written in Python.

Every endpoint is one entry of ``ENDPOINTS``: its path, its body's fields, the one library call
and how its result reads as JSON, and the schema of that result. The routes, the checks of a
body and the OpenAPI document (/api/v1/openapi.json) are all made from that table, so they
cannot disagree, and a new endpoint (``recovery-codes/use``) is one more entry.

A request is answered in this order: the key (401), the body (413, 400), the key's
organizations (403, before anything is looked up, so a key learns nothing of an organization it
may not act on, not even whether a user exists there), then the library call. Ordinary
outcomes (a wrong, replayed, throttled or malformed code, a locked user) are 200 with their
``result``; what the library raises is ``{"error": {"code", "message"}}`` with the status
errors.py gives it. Nothing here logs a body: codes, tokens and otpauth URIs stay out of logs.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfactl.api import Mfa
from mfactl.app import App
from mfactl.config import ApiKey
from mfactl.errors import MfactlError
from mfactl.services import api_keys
from mfactl.services.verification import RESULTS

PREFIX = "/api/v1"
MAX_BODY_BYTES = 16 * 1024
MAX_TEXT = 320  # an email address is at most 254; handles, slugs and codes are shorter
MAX_TOKEN_ID = 2**31 - 1  # the id column's range on every database
# C0, DEL and C1 controls: no organization, user, code or token holds one (and PostgreSQL
# refuses a NUL in text outright)
_TEXT = "[^\\u0000-\\u001f\\u007f-\\u009f]"
_NO_CONTROLS = f"^{_TEXT}*$"
_NOT_BLANK = f"^{_TEXT}*[^\\s\\u0000-\\u001f\\u007f-\\u009f]{_TEXT}*$"
ERRORS = logging.getLogger("mfactl.web")


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One member of a request body: a string (or an integer), required unless said."""

    name: str
    description: str
    integer: bool = False
    required: bool = True
    nullable: bool = False
    example: object = None
    max_length: int = MAX_TEXT
    not_blank: bool = False  # more than spaces

    def schema(self) -> dict[str, Any]:
        if self.integer:
            shape: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_ID}
        else:
            pattern = _NOT_BLANK if self.not_blank else _NO_CONTROLS
            shape = {"type": "string", "maxLength": self.max_length, "pattern": pattern}
        if self.nullable:
            shape["nullable"] = True
        return {**shape, "description": self.description}

    def problem(self, value: object) -> str | None:
        """What is wrong with a value given for this field, or None."""
        if value is None:
            return None if self.nullable else "must not be null"
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, int):
                return "must be an integer"
            if not 1 <= value <= MAX_TOKEN_ID:
                return f"must be between 1 and {MAX_TOKEN_ID}"
            return None
        if not isinstance(value, str):
            return "must be a string"
        if len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        if any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in value):
            return "must not contain control characters or lone surrogates"
        if self.not_blank and not value.strip():
            return "must not be blank"
        return None


def _obj(required: list[str], **properties: Mapping[str, object]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


_STR: dict[str, Any] = {"type": "string"}
_INT_OR_NULL: dict[str, Any] = {"type": "integer", "nullable": True}
_TIME: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 UTC, with Z",
}


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Endpoint:
    """POST /api/v1/<path>: a body of ``fields``, one library call, its result as JSON."""

    path: str
    summary: str
    fields: tuple[Field, ...]
    call: Callable[[Mfa, dict[str, Any]], dict[str, Any]]
    result: dict[str, Any]  # the schema of the 200 body
    errors: tuple[int, ...] = (404,)  # the error statuses of this call (besides every call's)
    example: Mapping[str, object] = field(default_factory=dict)


ORG = Field("org", "organization slug", example="acme")
USER = Field("user", "the user's handle, or email address", example="alice")
CODE = Field("code", "the code the user's authenticator app shows", example="123456")
# as links.find_link reads a token: more than spaces, at most 200 characters
TOKEN = Field(
    "token",
    "the token of the emailed link",
    example="the-token-of-the-link",
    max_length=200,
    not_blank=True,
)


def _verify(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    result = mfa.verify(body["org"], body["user"], body["code"])
    return {"ok": result.ok, **result.to_json()}


def _requirement(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    need = mfa.requirement(body["org"], body["user"], remember_token=body.get("remember_token"))
    return {
        "decision": need.decision,
        "reason": need.reason,
        "recovery_codes_left": need.recovery_codes_left,
        "recovery_codes_low": need.recovery_codes_low,
    }


def _enroll(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    return {"state": "pending", "otpauth_uri": mfa.enroll(body["org"], body["user"])}


def _confirm(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    codes = mfa.confirm(body["org"], body["user"], body["code"])
    return {"state": "active", "recovery_codes": list(codes)}


def _open_link(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    opened = mfa.open_link(body["org"], body["token"])
    return {
        "org": opened.org,
        "user": opened.user,
        "purpose": opened.purpose,
        "otpauth_uri": opened.otpauth_uri,
        "expires_at": _time(opened.expires_at),
    }


def _confirm_link(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    done = mfa.confirm_link(body["org"], body["token"], body["code"])
    return {
        "org": done.org,
        "user": done.user,
        "purpose": done.purpose,
        "recovery_codes": list(done.recovery_codes),
    }


def _use_recovery_code(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    result = mfa.use_recovery_code(body["org"], body["user"], body["code"])
    return {"ok": result.ok, **result.to_json(), "recovery_codes_left": result.recovery_codes_left}


def _remember(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    issued = mfa.remember(body["org"], body["user"])
    return {"id": issued.id, "token": issued.token, "expires_at": _time(issued.expires_at)}


def _remember_check(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    return {"remembered": mfa.is_remembered(body["org"], body["user"], body["token"])}


def _forget(mfa: Mfa, body: dict[str, Any]) -> dict[str, Any]:
    return {"revoked": mfa.forget(body["org"], body["user"], body.get("token_id"))}


_WHO: dict[str, Any] = {"org": _STR, "user": _STR}
_CODES: dict[str, Any] = {
    "type": "array",
    "items": _STR,
    "description": "the user's first recovery codes, shown once (none when turned off)",
}
_LINK: dict[str, Any] = {**_WHO, "purpose": {"type": "string", "enum": ["reset", "enroll"]}}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "requirement",
        "After the password check: may the user log in (allow), must they enroll, or give a code?",
        (
            ORG,
            USER,
            Field(
                "remember_token",
                "the device's remember-me token, if it has one",
                required=False,
                nullable=True,
            ),
        ),
        _requirement,
        _obj(
            ["decision", "reason", "recovery_codes_left", "recovery_codes_low"],
            decision={"type": "string", "enum": ["allow", "enroll", "code"]},
            reason=_STR,
            recovery_codes_left=_INT_OR_NULL,
            recovery_codes_low={
                "type": "boolean",
                "description": "down to 2 recovery codes or fewer, or none: time for a new set",
            },
        ),
        example={"org": "acme", "user": "alice"},
    ),
    Endpoint(
        "verify",
        "Check a login code. Wrong, replayed, throttled, locked, not enrolled and malformed "
        "codes are 200 with their result; only ok lets the user in.",
        (ORG, USER, CODE),
        _verify,
        _obj(
            ["result", "ok", "drift_steps", "retry_after_seconds"],
            result={"type": "string", "enum": list(RESULTS)},
            ok={"type": "boolean"},
            drift_steps=_INT_OR_NULL,
            retry_after_seconds=_INT_OR_NULL,
        ),
        example={"org": "acme", "user": "alice", "code": "123456"},
    ),
    Endpoint(
        "recovery-codes/use",
        "Log in with a recovery code instead of a code from the app: ok uses it up; wrong codes "
        "count in the user's throttle. Ordinary outcomes are 200 with their result.",
        (ORG, USER, Field("code", "a recovery code, typed however", example="abcd-efgh-jkmn")),
        _use_recovery_code,
        _obj(
            ["result", "ok", "drift_steps", "retry_after_seconds", "recovery_codes_left"],
            result={"type": "string", "enum": list(RESULTS)},
            ok={"type": "boolean"},
            drift_steps=_INT_OR_NULL,
            retry_after_seconds=_INT_OR_NULL,
            recovery_codes_left=_INT_OR_NULL,
        ),
        example={"org": "acme", "user": "alice", "code": "abcd-efgh-jkmn"},
    ),
    Endpoint(
        "enroll",
        "Start (or restart) the user's enrollment: the otpauth URI to show as a QR code, once.",
        (ORG, USER),
        _enroll,
        _obj(
            ["state", "otpauth_uri"],
            state={"type": "string", "enum": ["pending"]},
            otpauth_uri=_STR,
        ),
        errors=(404, 409),
        example={"org": "acme", "user": "alice"},
    ),
    Endpoint(
        "confirm",
        "Activate the pending enrollment with the first code; 409 when the code is wrong (it "
        "counts in the user's throttle), the user is throttled or locked, or nothing is pending.",
        (ORG, USER, CODE),
        _confirm,
        _obj(
            ["state", "recovery_codes"],
            state={"type": "string", "enum": ["active"]},
            recovery_codes=_CODES,
        ),
        errors=(404, 409),
        example={"org": "acme", "user": "alice", "code": "123456"},
    ),
    Endpoint(
        "links/open",
        "Open an emailed reset or enrollment link: a new pending secret and its otpauth URI.",
        (ORG, TOKEN),
        _open_link,
        _obj(
            ["org", "user", "purpose", "otpauth_uri", "expires_at"],
            **_LINK,
            otpauth_uri=_STR,
            expires_at=_TIME,
        ),
        errors=(404, 409, 410),
        example={"org": "acme", "token": "the-token-of-the-link"},
    ),
    Endpoint(
        "links/confirm",
        "Activate the link's pending secret with the first code and use the link up.",
        (ORG, TOKEN, CODE),
        _confirm_link,
        _obj(["org", "user", "purpose", "recovery_codes"], **_LINK, recovery_codes=_CODES),
        errors=(404, 409, 410),
        example={"org": "acme", "token": "the-token-of-the-link", "code": "123456"},
    ),
    Endpoint(
        "remember",
        "A remember-me token for this device (keep it in a cookie; only its keyed hash is stored).",
        (ORG, USER),
        _remember,
        _obj(
            ["id", "token", "expires_at"],
            id={"type": "integer"},
            token=_STR,
            expires_at=_TIME,
        ),
        errors=(404, 409),
        example={"org": "acme", "user": "alice"},
    ),
    Endpoint(
        "remember/check",
        "Is this a live remember-me token of the user?",
        (ORG, USER, Field("token", "the device's remember-me token", example="a-token")),
        _remember_check,
        _obj(["remembered"], remembered={"type": "boolean"}),
        example={"org": "acme", "user": "alice", "token": "a-token"},
    ),
    Endpoint(
        "forget",
        "Revoke one remember-me token by id, or all of the user's; says how many.",
        (
            ORG,
            USER,
            Field(
                "token_id",
                "the token's id (from remember); none: all of them",
                integer=True,
                required=False,
                nullable=True,
            ),
        ),
        _forget,
        _obj(["revoked"], revoked={"type": "integer", "minimum": 0}),
        example={"org": "acme", "user": "alice"},
    ),
)


# --- answering -----------------------------------------------------------------------------------


class _Refused(Exception):
    """A request answered with an error before any library call."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


@dataclass
class Api:
    """What the routes share: each configured key, and the library acting under its name."""

    keys: tuple[ApiKey, ...]
    clients: dict[str, Mfa]  # by key name: audit events name the key

    def client(self, authorization: str | None) -> tuple[ApiKey, Mfa]:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _Refused(401, "unauthorized", "send the API key as 'Authorization: Bearer KEY'")
        key = api_keys.match(self.keys, presented.strip())
        if key is None:
            raise _Refused(401, "unauthorized", "this API key is not one of server.apiKeys")
        return key, self.clients[key.name]


async def _body(request: Request, endpoint: Endpoint) -> dict[str, Any]:
    """The JSON object sent, capped at MAX_BODY_BYTES and checked against the endpoint's fields."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise _Refused(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Refused(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise _Refused(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "bad_request", "the body must be a JSON object")
    known = {f.name: f for f in endpoint.fields}
    unknown = sorted(set(body) - set(known))
    if unknown:  # named only when short: a misplaced secret must not come back
        names = ", ".join(repr(n) if len(n) <= 32 else "(a long name)" for n in unknown[:5])
        raise _Refused(400, "bad_request", f"unknown field: {names}")
    for name, spec in known.items():
        if name not in body:
            if spec.required:
                raise _Refused(400, "bad_request", f"{name}: is required")
            continue
        problem = spec.problem(body[name])
        if problem:
            raise _Refused(400, "bad_request", f"{name}: {problem}")
    return body


def _failed(exc: MfactlError) -> Response:
    if exc.http_status >= 500:  # the reason is for the log (no body, so no code or token)
        ERRORS.error("api: %s: %s", type(exc).__name__, exc.message)
        message = (
            "the database is unavailable; try again"
            if exc.http_status == 503
            else "the server cannot do this; its log says why"
        )
        return error(exc.http_status, exc.code, message)
    return error(exc.http_status, exc.code, exc.message)


def _route(endpoint: Endpoint) -> Callable[[Request], Any]:
    async def answer(request: Request) -> Response:
        if request.method != "POST":
            return error(405, "method_not_allowed", "use POST", {"Allow": "POST"})
        api: Api = request.app.state.api
        try:
            key, client = api.client(request.headers.get("authorization"))
            body = await _body(request, endpoint)
            if not key.may_act_on(body["org"]):
                raise _Refused(403, "forbidden", "this API key may not act on this organization")
        except _Refused as refused:
            headers = {"WWW-Authenticate": "Bearer"} if refused.status == 401 else None
            return error(refused.status, refused.code, refused.message, headers)
        try:
            result = await run_in_threadpool(endpoint.call, client, body)
        except MfactlError as exc:
            return _failed(exc)
        except Exception as exc:  # by its type and place only: its message may quote the body
            where = traceback.extract_tb(exc.__traceback__)[-1]
            ERRORS.error(
                "api: unexpected %s in %s (%s:%s in %s)",
                type(exc).__name__,
                endpoint.path,
                where.filename.rsplit("/", 1)[-1],
                where.lineno,
                where.name,
            )
            return error(500, "error", "the server cannot do this; its log says why")
        return JSONResponse(result)

    return answer


async def _openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def _off(request: Request) -> Response:
    return error(404, "not_found", "the HTTP API is off: no server.apiKeys are configured")


async def _nothing_here(request: Request) -> Response:
    return error(404, "not_found", "there is no endpoint at this address")


def routes(app: App, keys: tuple[ApiKey, ...]) -> tuple[list[Route], Api | None]:
    """The API's routes, and what they share (None when no key is configured: the API is off,
    and every /api/v1 address answers 404)."""
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    if not keys:
        return [Route(PREFIX + "/{rest:path}", _off, methods=methods)], None
    api = Api(keys, {key.name: Mfa(app.acting_as(key.name)) for key in keys})
    found = [Route(f"{PREFIX}/{e.path}", _route(e), methods=methods) for e in ENDPOINTS]
    found.append(Route(f"{PREFIX}/openapi.json", _openapi, methods=["GET"]))
    found.append(Route(PREFIX + "/{rest:path}", _nothing_here, methods=methods))
    return found, api
