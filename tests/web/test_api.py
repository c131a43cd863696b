"""The HTTP API (/api/v1) through Starlette's TestClient: each endpoint's outcomes and statuses,
the keys, the body checks, and what reaches the log. Every answer is checked against the
OpenAPI document the server publishes."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from mfactl.app import App
from mfactl.config import ApiKey
from mfactl.services import api_keys, audit
from mfactl.web import api, openapi
from tests.conftest import FrozenClock
from tests.unit.helpers import phone_code, secret_of, set_login
from tests.web.conftest import browser, new_link

EVERY = api_keys.create("login-server", [])  # every organization
ACME = api_keys.create("acme-login", ["acme"])
OTHER = api_keys.create("other-login", ["other"])
KEYS = (EVERY.entry, ACME.entry, OTHER.entry)
OPENAPI = openapi.document()


def _json_schema(schema: Any) -> Any:
    """OpenAPI 3.0's schema dialect as JSON Schema: nullable becomes a null type."""
    if isinstance(schema, list):
        return [_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    found = {k: _json_schema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        found["type"] = [schema["type"], "null"]
        if "enum" in found:
            found["enum"] = [*found["enum"], None]
    if found.get("$ref") == "#/components/schemas/Error":
        return _json_schema(OPENAPI["components"]["schemas"]["Error"])
    return found


def conforms(path: str, status: int, body: Any) -> None:
    """The answer is one the OpenAPI document lists, in the shape it gives."""
    import jsonschema_rs

    responses = OPENAPI["paths"][path]["post"]["responses"]
    assert str(status) in responses, f"{path} answered {status}, not in its OpenAPI responses"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    jsonschema_rs.validate(_json_schema(schema), body)


class Api:
    """A client of the API with a key; each answer checked against the OpenAPI document."""

    def __init__(self, client: TestClient, key: str | None = EVERY.key) -> None:
        self.client, self.key = client, key

    def post(self, path: str, body: Any, key: str | None = "default", **kw: Any) -> Any:
        key = self.key if key == "default" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = self.client.post(f"/api/v1/{path}", json=body, headers=headers, **kw)
        assert response.headers["content-type"] == "application/json"
        conforms(f"/api/v1/{path}", response.status_code, response.json())
        return response

    def ok(self, path: str, body: Any, key: str | None = "default") -> dict[str, Any]:
        response = self.post(path, body, key)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def error(self, path: str, body: Any, status: int, key: str | None = "default") -> str:
        response = self.post(path, body, key)
        assert response.status_code == status, response.text
        code: str = response.json()["error"]["code"]
        return code


@pytest.fixture
def http(web_app: App) -> Iterator[Api]:
    with browser(web_app, api_keys=KEYS) as client:
        yield Api(client)


def enrolled(http: Api, app: App, user: str = "alice") -> str:
    """Enroll and confirm ``user`` over the API; the otpauth URI (the phone's secret)."""
    uri: str = http.ok("enroll", {"org": "acme", "user": user})["otpauth_uri"]
    assert http.ok("confirm", {"org": "acme", "user": user, "code": phone_code(uri, app.now())})
    return uri


# --- keys ----------------------------------------------------------------------------------------


def test_without_keys_the_api_is_off_and_answers_404(web_app: App) -> None:
    with browser(web_app) as client:
        for path in ("verify", "requirement", "openapi.json", "anything"):
            response = client.post(
                f"/api/v1/{path}",
                json={"org": "acme", "user": "alice", "code": "123456"},
                headers={"Authorization": f"Bearer {EVERY.key}"},
            )
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        assert client.get("/api/v1/openapi.json").status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {EVERY.key}",
        "Bearer mfk_wrong",
        f"Bearer {EVERY.key}x",
    ],
)
def test_no_key_or_a_wrong_key_is_401(http: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = http.client.post(
        "/api/v1/verify", json={"org": "acme", "user": "alice", "code": "1"}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_key_of_another_organization_is_403_and_learns_nothing_of_its_users(
    http: Api, web_app: App
) -> None:
    enrolled(http, web_app)
    answers = [
        http.post(path, body, key=OTHER.key)
        for path, body in [
            ("verify", {"org": "acme", "user": "alice", "code": "123456"}),  # exists
            ("verify", {"org": "acme", "user": "nobody", "code": "123456"}),  # does not
            ("verify", {"org": "ACME ", "user": "alice", "code": "123456"}),  # as lookups read it
            ("verify", {"org": "no-such-org", "user": "alice", "code": "123456"}),
            ("requirement", {"org": "acme", "user": "alice"}),
            ("requirement", {"org": "acme", "user": "nobody"}),
            ("links/open", {"org": "acme", "token": "x"}),
            ("forget", {"org": "acme", "user": "alice"}),
        ]
    ]
    assert {(a.status_code, a.text) for a in answers} == {(403, answers[0].text)}, (
        "every refusal is the same answer"
    )
    # nothing was done: alice's code still works for a key of hers
    result = http.ok("verify", {"org": "acme", "user": "alice", "code": "000000"}, key=ACME.key)
    assert result["result"] in ("wrong", "ok")


def test_a_key_limited_to_the_organization_acts_on_it_and_is_the_audit_actor(
    http: Api, web_app: App
) -> None:
    uri = http.ok("enroll", {"org": "acme", "user": "alice"}, key=ACME.key)["otpauth_uri"]
    code = phone_code(uri, web_app.now())
    http.ok("confirm", {"org": "acme", "user": "alice", "code": code}, key=ACME.key)
    # the organization as lookups read it (any case, spaces around) is the key's too
    assert http.ok("verify", {"org": " ACME", "user": "alice", "code": "x"}, key=ACME.key)
    actors = {(e.action, e.actor) for e in audit.list_events(web_app)}
    assert ("mfa.enroll", "acme-login") in actors
    assert ("mfa.confirm", "acme-login") in actors


# --- bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "object"),
        (b'"acme"', "object"),
        (b"", "not JSON"),
        (b'{"org": "acme", "user": "alice"}', "code: is required"),
        (b'{"org": "acme", "user": "alice", "code": 123456}', "code: must be a string"),
        (b'{"org": "acme", "user": null, "code": "1"}', "user: must not be null"),
        (b'{"org": ["acme"], "user": "alice", "code": "1"}', "org: must be a string"),
        (b'{"org": "acme", "user": "alice", "code": "1", "extra": 1}', "unknown field: 'extra'"),
        (b'{"org": "acme", "user": "al\\u0000ice", "code": "1"}', "control"),
        (b'{"org": "acme", "user": "\\ud800", "code": "1"}', "surrogate"),
        (b'{"org": "acme", "user": "' + b"a" * 321 + b'", "code": "1"}', "at most 320"),
        (b"[" * 100_00, "not JSON"),
    ],
)
def test_a_bad_body_is_400_saying_what_is_wrong(http: Api, body: bytes, why: str) -> None:
    response = http.client.post(
        "/api/v1/verify",
        content=body,
        headers={"Authorization": f"Bearer {EVERY.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert why in response.json()["error"]["message"]


@pytest.mark.parametrize("token_id", [0, -1, 2**31, True, "1", 1.5])
def test_forget_takes_a_token_id_in_the_id_range_only(http: Api, token_id: object) -> None:
    body = {"org": "acme", "user": "alice", "token_id": token_id}
    assert http.error("forget", body, 400) == "bad_request"


def test_a_large_body_is_413_whether_it_says_its_length_or_not(http: Api) -> None:
    big = b'{"org": "acme", "user": "alice", "code": "' + b"1" * api.MAX_BODY_BYTES + b'"}'
    headers = {"Authorization": f"Bearer {EVERY.key}"}
    response = http.client.post("/api/v1/verify", content=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield big[: api.MAX_BODY_BYTES]
        yield big[api.MAX_BODY_BYTES :]

    response = http.client.post("/api/v1/verify", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    # just under the cap is read (and answered)
    fits = b'{"org": "acme", "user": "alice", "code": "1", "x": "' + b"1" * 16_000 + b'"}'
    assert len(fits) <= api.MAX_BODY_BYTES
    assert http.client.post("/api/v1/verify", content=fits, headers=headers).status_code == 400


def test_other_methods_and_addresses(http: Api) -> None:
    headers = {"Authorization": f"Bearer {EVERY.key}"}
    response = http.client.get("/api/v1/verify", headers=headers)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    response = http.client.post("/api/v1/recovery-codes/nope", json={}, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- each endpoint's outcomes --------------------------------------------------------------------


def test_verify_gives_every_ordinary_outcome_as_200(
    http: Api, web_app: App, clock: FrozenClock
) -> None:
    who = {"org": "acme", "user": "alice"}
    assert http.ok("verify", {**who, "code": "123456"}) == {
        "result": "not_enrolled",
        "ok": False,
        "drift_steps": None,
        "retry_after_seconds": None,
    }
    uri = enrolled(http, web_app)
    clock.advance(30)
    code = phone_code(uri, web_app.now())
    assert http.ok("verify", {**who, "code": code})["ok"] is True
    assert http.ok("verify", {**who, "code": code})["result"] == "replayed"
    assert http.ok("verify", {**who, "code": "12ab56"})["result"] == "malformed"
    wrong = "000000" if code != "000000" else "111111"
    first = http.ok("verify", {**who, "code": wrong})
    assert (first["result"], first["ok"]) == ("wrong", False)
    throttled = http.ok("verify", {**who, "code": wrong})
    assert throttled["result"] == "throttled"
    assert throttled["retry_after_seconds"] >= 1
    for _ in range(10):  # the user's throttle holds however fast the client asks
        clock.advance(60)
        http.ok("verify", {**who, "code": wrong})
    assert http.ok("verify", {**who, "code": phone_code(uri, web_app.now())})["result"] in (
        "locked",
        "throttled",
    )
    assert http.error("verify", {"org": "acme", "user": "nobody", "code": "1"}, 404)
    assert http.error("verify", {"org": "nope", "user": "alice", "code": "1"}, 404)


def test_requirement_remember_check_and_forget(http: Api, web_app: App) -> None:
    who = {"org": "acme", "user": "alice"}
    assert http.ok("requirement", who)["decision"] == "allow"
    set_login(web_app, mfa={"mandatory": True})
    with browser(web_app, api_keys=KEYS) as client:  # settings are read when the server starts
        mandatory = Api(client)
        assert mandatory.ok("requirement", who)["decision"] == "enroll"
    enrolled(http, web_app)
    assert http.ok("requirement", who) == {
        "decision": "code",
        "reason": "MFA is active for this user",
        "recovery_codes_left": 10,  # the first set, made by the confirmation
        "recovery_codes_low": False,
    }
    issued = http.ok("remember", who)
    assert set(issued) == {"id", "token", "expires_at"}
    assert issued["expires_at"].endswith("Z")
    token = issued["token"]
    assert http.ok("requirement", {**who, "remember_token": token})["decision"] == "allow"
    assert http.ok("requirement", {**who, "remember_token": None})["decision"] == "code"
    assert http.ok("remember/check", {**who, "token": token}) == {"remembered": True}
    assert http.ok("remember/check", {**who, "token": token + "x"}) == {"remembered": False}
    assert http.ok("forget", {**who, "token_id": issued["id"]}) == {"revoked": 1}
    assert http.ok("remember/check", {**who, "token": token}) == {"remembered": False}
    assert http.ok("forget", who) == {"revoked": 0}
    assert http.error("remember", {"org": "acme", "user": "bob"}, 409) == "conflict"
    assert http.error("requirement", {"org": "acme", "user": "nobody"}, 404) == "not_found"


def test_enroll_and_confirm(http: Api, web_app: App) -> None:
    who = {"org": "acme", "user": "bob@example.com"}  # by email, as the library takes it
    assert http.error("confirm", {**who, "code": "123456"}, 409) == "conflict"  # none pending
    started = http.ok("enroll", who)
    assert started["state"] == "pending"
    assert started["otpauth_uri"].startswith("otpauth://totp/")
    code = phone_code(started["otpauth_uri"], web_app.now())
    wrong = "000000" if code != "000000" else "111111"
    assert http.error("confirm", {**who, "code": wrong}, 409) == "conflict"  # counted
    web_app.clock.advance(5)  # type: ignore[attr-defined]
    confirmed = http.ok("confirm", {**who, "code": code})
    assert confirmed["state"] == "active"
    assert len(confirmed["recovery_codes"]) == 10  # the first set, shown this once
    assert http.error("confirm", {**who, "code": code}, 409) == "conflict"  # already active
    assert http.error("enroll", {"org": "acme", "user": "nobody"}, 404) == "not_found"


def test_links_open_and_confirm(http: Api, web_app: App) -> None:
    from urllib.parse import parse_qs, urlparse

    token = parse_qs(urlparse(new_link(web_app)).query)["token"][0]
    link = {"org": "acme", "token": token}
    assert http.error("links/confirm", {**link, "code": "123456"}, 409) == "conflict"  # unopened
    opened = http.ok("links/open", link)
    assert (opened["org"], opened["user"], opened["purpose"]) == ("acme", "bob", "reset")
    assert opened["expires_at"].endswith("Z")
    assert http.error("links/open", link, 409) == "conflict"  # opened once only
    code = phone_code(opened["otpauth_uri"], web_app.now())
    confirmed = http.ok("links/confirm", {**link, "code": code})
    assert len(confirmed.pop("recovery_codes")) == 10
    assert confirmed == {"org": "acme", "user": "bob", "purpose": "reset"}
    assert http.error("links/confirm", {**link, "code": code}, 410) == "gone"
    assert http.error("links/open", {"org": "acme", "token": "nope"}, 404) == "not_found"


def test_recovery_codes_use(http: Api, web_app: App) -> None:
    who = {"org": "acme", "user": "alice"}
    assert http.ok("recovery-codes/use", {**who, "code": "abcd-efgh-jkmn"})["result"] == (
        "not_enrolled"
    )
    uri = http.ok("enroll", who)["otpauth_uri"]
    codes = http.ok("confirm", {**who, "code": phone_code(uri, web_app.now())})["recovery_codes"]
    first = codes[0].upper().replace("-", " ")  # typed however
    assert http.ok("recovery-codes/use", {**who, "code": first}) == {
        "ok": True,
        "result": "ok",
        "drift_steps": None,
        "retry_after_seconds": None,
        "recovery_codes_left": 9,
    }
    again = http.ok("recovery-codes/use", {**who, "code": codes[0]})
    assert (again["ok"], again["result"]) == (False, "wrong")  # used up, and counted
    assert http.ok("recovery-codes/use", {**who, "code": "x"})["result"] == "malformed"
    assert http.ok("requirement", who)["recovery_codes_left"] == 9
    assert http.error("recovery-codes/use", {"org": "acme", "user": "nobody", "code": "x"}, 404)


# --- failures ------------------------------------------------------------------------------------


def test_a_database_that_does_not_answer_is_503(web_app: App) -> None:
    from mfactl.config import Database

    down = copy.copy(web_app)
    down.__dict__.pop("engine", None)
    down.__dict__.pop("session_factory", None)
    down._schema_checked = False
    down.settings = replace(
        web_app.settings,
        database=Database(url="postgresql+psycopg://nobody@127.0.0.1:1/none"),
    )
    with browser(down, api_keys=KEYS) as client:
        answer = Api(client)
        assert answer.error("verify", {"org": "acme", "user": "a", "code": "1"}, 503) == (
            "unavailable"
        )
        assert answer.error("enroll", {"org": "acme", "user": "a"}, 503) == "unavailable"
    down.close()


def test_an_unexpected_error_is_500_logged_without_the_request(
    http: Api, web_app: App, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from mfactl.services import verification

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"boom with {args[-1]}")

    monkeypatch.setattr(verification, "verify", broken)
    with caplog.at_level(logging.INFO, logger="mfactl"):
        body = {"org": "acme", "user": "alice", "code": "424242"}
        assert http.error("verify", body, 500) == "error"
    assert "RuntimeError" in caplog.text
    assert "424242" not in caplog.text


def test_the_log_holds_no_code_token_secret_or_key(http: Api, web_app: App, caplog: Any) -> None:
    from urllib.parse import parse_qs, urlparse

    with caplog.at_level(logging.INFO, logger="mfactl"):
        uri = enrolled(http, web_app)
        code = phone_code(uri, web_app.now())
        http.ok("verify", {"org": "acme", "user": "alice", "code": code})
        remembered = http.ok("remember", {"org": "acme", "user": "alice"})["token"]
        http.ok("remember/check", {"org": "acme", "user": "alice", "token": remembered})
        link = parse_qs(urlparse(new_link(web_app, "bob")).query)["token"][0]
        opened = http.ok("links/open", {"org": "acme", "token": link})
        http.error("links/open", {"org": "acme", "token": link}, 409)
    assert "POST /api/v1/links/open" in caplog.text  # the access log is there
    for secret in (
        secret_of(uri),
        secret_of(opened["otpauth_uri"]),
        code,
        remembered,
        link,
        EVERY.key,
    ):
        assert secret not in caplog.text


def test_every_endpoint_is_in_the_openapi_document_exactly_once(http: Api) -> None:
    served = http.client.get("/api/v1/openapi.json").json()
    assert served == OPENAPI
    assert sorted(served["paths"]) == sorted(f"/api/v1/{e.path}" for e in api.ENDPOINTS)
    for endpoint in api.ENDPOINTS:
        operation = served["paths"][f"/api/v1/{endpoint.path}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert sorted(body["properties"]) == sorted(f.name for f in endpoint.fields)


def test_config_names_each_bad_api_key_field_by_its_place(tmp_path: Any) -> None:
    from mfactl.config import load_settings
    from mfactl.errors import ConfigError

    values = tmp_path / "values.yaml"
    good = EVERY.entry
    values.write_text(
        "server:\n  apiKeys:\n"
        f"    - {{name: a, orgs: ['*'], hash: '{good.hash}'}}\n"
        "    - {name: '', orgs: [], hash: mfk_the_key_itself}\n"
        f"    - {{name: a, orgs: [Acme!], hash: '{good.hash}'}}\n"
        "    - not a mapping\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(values, environ={})
    problems = raised.value.problems
    assert "server.apiKeys[1].name: must be a non-empty string (the audit actor)" in problems
    assert any(p.startswith("server.apiKeys[1].orgs: must be a non-empty list") for p in problems)
    assert any(p.startswith("server.apiKeys[1].hash: must be") for p in problems)
    assert 'server.apiKeys[2].orgs[0]: must be an organization slug or "*"' in problems
    assert any(p.startswith("server.apiKeys[3]: must be a mapping") for p in problems)
    assert not any("mfk_the_key_itself" in p for p in problems)
    values.write_text(
        "server:\n  apiKeys:\n"
        f"    - {{name: a, orgs: ['*'], hash: '{good.hash}'}}\n"
        f"    - {{name: a, orgs: [acme], hash: '{ACME.entry.hash}'}}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(values, environ={})
    assert raised.value.problems == [
        "server.apiKeys[1].name: is the name of an earlier key (each key is its own audit actor)"
    ]
    values.write_text(
        f"server:\n  apiKeys:\n    - {{name: ' a ', orgs: [acme, beta], hash: '{good.hash}'}}\n"
    )
    assert load_settings(values, environ={}).server.api_keys == (
        ApiKey("a", ("acme", "beta"), good.hash),
    )
