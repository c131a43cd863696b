"""The setup page over HTTP: each status, what a GET leaves alone, the hold, codes, security."""

from __future__ import annotations

import html
import logging
import re
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from mfactl.app import App
from mfactl.config import Database
from mfactl.db.models import ActionToken, AuditEvent, MfaSecret
from mfactl.services import recovery, setup_flow, users
from tests.conftest import FrozenClock
from tests.unit.helpers import people, phone_code
from tests.web.conftest import ORIGIN, STEP, browser, new_link, with_links

HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def state(app: App) -> list[Any]:
    """Everything a flow can change: links, secrets, audit events."""
    with app.uow() as uow:
        tokens = [
            (t.id, t.opened_at, t.used_at, t.expires_at, t.held_by, t.held_until)
            for t in uow.session.scalars(select(ActionToken))
        ]
        secrets_ = [
            (s.user_id, s.state, s.ciphertext, s.failed_attempts)
            for s in uow.session.scalars(select(MfaSecret))
        ]
        events = uow.session.scalars(select(AuditEvent.id)).all()
        return [tokens, secrets_, list(events)]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found[1]


def shown_secret(page: str) -> str:
    found = re.search(r'id="secret">([A-Z2-7 ]+)<', page)
    assert found, page
    return found[1].replace(" ", "")


def uri_of(app: App, page: str) -> str:
    return f"otpauth://totp/x?secret={shown_secret(page)}&issuer=x"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def shown_codes(page: str) -> list[str]:
    return re.findall(r"<li><code>([2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4})</code></li>", page)


def press(client: TestClient, url: str, **headers: str) -> Any:
    """GET the link and press its button."""
    page = client.get(path_of(url))
    assert page.status_code == 200, page.text
    return client.post(
        path_of(url), data={"csrf": csrf_of(page.text)}, headers={"origin": ORIGIN, **headers}
    )


def send_code(client: TestClient, code: str, **headers: str) -> Any:
    step = client.get(STEP)
    return client.post(
        STEP, data={"csrf": csrf_of(step.text), "code": code}, headers={"origin": ORIGIN, **headers}
    )


def test_get_names_org_and_user_with_one_button_and_changes_nothing(
    web_app: App, client: TestClient
) -> None:
    url = new_link(web_app)
    before = state(web_app)
    page = client.get(path_of(url))
    assert page.status_code == 200
    assert "Set up MFA for Acme" in page.text and "bob" in page.text
    assert page.text.count("<button") == 1
    assert "Example Platform" in page.text  # the issuer, on every page
    for name, value in HEADERS.items():
        assert page.headers[name] == value
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    client.get(path_of(url))  # a scanner, then a preview
    assert state(web_app) == before


def test_opening_redirects_to_an_address_without_the_token_and_shows_the_step(
    web_app: App, client: TestClient
) -> None:
    url = new_link(web_app)
    token = url.rsplit("token=", 1)[1]
    second_tab = csrf_of(client.get(path_of(url)).text)  # a tab opened before the button
    opened = press(client, url)
    assert opened.status_code == 303
    assert opened.headers["location"] == STEP and token not in opened.headers["location"]
    cookie = opened.headers["set-cookie"]
    assert "mfactl_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Secure" not in cookie  # plain http here
    step = client.get(STEP)
    assert step.status_code == 200
    assert "<svg" in step.text and "<script" not in step.text.lower()
    assert 'autocomplete="one-time-code"' in step.text and 'inputmode="numeric"' in step.text
    assert re.search(r'id="secret">([A-Z2-7]{4} )+[A-Z2-7]{1,4}<', step.text)  # groups of four
    assert "Example Platform" in step.text and "Acme" in step.text
    # a reload and the button pressed again in a second tab: the same secret, still held
    assert shown_secret(client.get(STEP).text) == shown_secret(step.text)
    again = client.post(path_of(url), data={"csrf": second_tab}, headers={"origin": ORIGIN})
    assert (again.status_code, again.headers["location"]) == (303, STEP)
    assert shown_secret(client.get(STEP).text) == shown_secret(step.text)
    # the link page itself, reached again in this browser, goes on to the step
    assert client.get(path_of(url)).headers["location"] == STEP


def test_the_whole_flow_on_each_database(app: App, clock: FrozenClock) -> None:
    web = with_links(app)
    people(web, "alice", "bob")
    url = new_link(web)
    with browser(web) as client:
        press(client, url)
        step = client.get(STEP)
        wrong = send_code(
            client,
            "000000" if phone_code(uri_of(web, step.text), clock()) != "000000" else "111111",
        )
        assert wrong.status_code == 422 and "not right" in wrong.text
        assert shown_secret(wrong.text) == shown_secret(step.text)
        clock.advance(30)
        right = send_code(client, phone_code(uri_of(web, step.text), clock()))
        # the answer itself is the success page, with the first recovery codes: shown once
        assert right.status_code == 200 and "MFA is now active for Acme" in right.text
        codes = shown_codes(right.text)
        assert len(codes) == 10
        download = re.search(r'href="(data:text/plain;charset=utf-8,[^"]+)" download=', right.text)
        assert download is not None
        text_file = unquote(html.unescape(download[1]).split(",", 1)[1])
        assert all(code in text_file.splitlines() for code in codes)
        done = client.get(STEP)
        assert done.status_code == 200 and "MFA is now active for Acme" in done.text
        assert 'id="secret"' not in done.text
        assert shown_codes(done.text) == [] and not [c for c in codes if c in done.text]
        assert client.get(path_of(url)).status_code == 410
    assert users.user_status(web, "acme", "bob").mfa == "active"
    with web.uow() as uow:
        events = uow.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        flow = [(e.action, e.outcome, e.details.get("client")) for e in events[-3:]]
    assert flow == [
        ("link.open", "ok", "testclient"),
        ("link.confirm", "wrong", "testclient"),
        ("link.confirm", "ok", "testclient"),
    ]
    assert recovery.use(web, "acme", "bob", codes[0]).ok
    with web.engine.connect() as conn:
        logged = repr(conn.execute(select(AuditEvent.details)).all())
    assert not [c for c in codes if c in logged]


def test_unknown_used_expired_and_replaced_links(
    web_app: App, client: TestClient, clock: FrozenClock
) -> None:
    url = new_link(web_app)
    unknown = client.get("/mfa/setup?org=acme&token=" + "x" * 43)
    assert unknown.status_code == 404 and "administrator for a new link" in unknown.text
    assert client.get(path_of(url).replace("org=acme", "org=beta")).status_code == 404
    assert client.get("/mfa/setup?org=acme").status_code == 404  # no token at all
    assert client.get("/elsewhere").status_code == 404
    newer = new_link(web_app)
    replaced = client.get(path_of(url))
    assert replaced.status_code == 410 and "administrator for a new one" in replaced.text
    clock.advance(73 * 3600)
    assert client.get(path_of(newer)).status_code == 410
    for page in (unknown, replaced):
        for name, value in HEADERS.items():
            assert page.headers[name] == value


def test_another_browser_is_refused_until_the_hold_runs_out(
    web_app: App, client: TestClient, clock: FrozenClock
) -> None:
    url = new_link(web_app)
    press(client, url)
    first = shown_secret(client.get(STEP).text)
    with browser(web_app) as other:
        assert other.get(path_of(url)).status_code == 409
        # even with a form of its own that passes the CSRF check, it is refused
        mine = setup_flow.new_browser_secret()
        other.cookies.set("mfactl_form", mine)
        before = state(web_app)
        refused = other.post(
            path_of(url),
            data={"csrf": setup_flow.csrf_token(web_app, mine)},
            headers={"origin": ORIGIN},
        )
        assert refused.status_code == 409 and "another browser" in refused.text
        assert first not in refused.text and state(web_app) == before
        assert other.get(STEP).status_code == 404
        clock.advance(15 * 60 + 1)
        assert client.get(STEP).status_code == 410  # the first browser's hold is over
        assert press(other, url).status_code == 303
        second = shown_secret(other.get(STEP).text)
        assert second != first  # a new secret: the old one was shown to the first only
        assert client.get(path_of(url)).status_code == 409


def test_wrong_throttled_locked_and_malformed_codes(
    web_app: App, client: TestClient, clock: FrozenClock
) -> None:
    url = new_link(web_app)
    press(client, url)
    step = client.get(STEP).text
    good = phone_code(uri_of(web_app, step), clock())
    bad = "000000" if good != "000000" else "111111"
    malformed = send_code(client, "12ab")
    assert malformed.status_code == 422 and "6-digit" in malformed.text

    def failures() -> int:
        with web_app.uow() as uow:
            return uow.session.scalars(select(MfaSecret.failed_attempts)).one()

    assert failures() == 0  # a slip of the keyboard is not counted
    wrong = send_code(client, bad)
    assert wrong.status_code == 422 and failures() == 1
    throttled = send_code(client, bad)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert "wait 1 second," in throttled.text and failures() == 1
    for _ in range(4):
        clock.advance(61)
        last = send_code(client, bad)
    assert last.status_code == 423 and "locked" in last.text and failures() == 5
    clock.advance(61)
    assert send_code(client, phone_code(uri_of(web_app, step), clock())).status_code == 423
    assert users.user_status(web_app, "acme", "bob").mfa == "pending"


def test_the_throttle_outlives_a_new_hold(
    web_app: App, client: TestClient, clock: FrozenClock
) -> None:
    url = new_link(web_app)
    press(client, url)
    step = client.get(STEP).text
    bad = "000000" if phone_code(uri_of(web_app, step), clock()) != "000000" else "111111"
    assert send_code(client, bad).status_code == 422
    clock.advance(15 * 60 + 1)
    press(client, url)  # starting again: a new secret, the same count of failures
    assert shown_secret(client.get(STEP).text) != shown_secret(step)
    with web_app.uow() as uow:
        count = uow.session.scalars(select(MfaSecret.failed_attempts)).one()
    assert count == 1


def test_posts_without_the_csrf_token_or_from_another_origin_change_nothing(
    web_app: App, client: TestClient
) -> None:
    url = new_link(web_app)
    page = client.get(path_of(url))
    token = csrf_of(page.text)
    before = state(web_app)
    cases = [
        ({}, {"origin": ORIGIN}),
        ({"csrf": "0" * 64}, {"origin": ORIGIN}),
        ({"csrf": token}, {"origin": "https://evil.example"}),
        ({"csrf": token}, {"origin": "null", "sec-fetch-site": "cross-site"}),
        ({"csrf": token}, {}),
    ]
    for data, headers in cases:
        refused = client.post(path_of(url), data=data, headers=headers)
        assert refused.status_code == 403, (data, headers)
        assert state(web_app) == before
    # what a browser sends from our own no-referrer page
    ours = client.post(
        path_of(url),
        data={"csrf": token},
        headers={"origin": "null", "sec-fetch-site": "same-origin"},
    )
    assert ours.status_code == 303
    held = state(web_app)
    step = client.get(STEP).text
    for data, headers in [
        ({"code": "123456"}, {"origin": ORIGIN}),
        ({"code": "123456", "csrf": csrf_of(step)}, {"origin": "https://evil.example"}),
    ]:
        assert client.post(STEP, data=data, headers=headers).status_code == 403
        assert state(web_app) == held


def test_a_token_from_another_browser_session_is_refused(web_app: App, client: TestClient) -> None:
    url = new_link(web_app)
    with browser(web_app) as other:
        foreign = csrf_of(other.get(path_of(url)).text)
    client.get(path_of(url))
    before = state(web_app)
    refused = client.post(path_of(url), data={"csrf": foreign}, headers={"origin": ORIGIN})
    assert refused.status_code == 403 and state(web_app) == before


def test_enroll_links_and_links_with_the_token_in_the_path(sqlite_app: App) -> None:
    app = with_links(
        sqlite_app,
        reset_url=ORIGIN + "/s/{org}/{token}",
        enroll_url=ORIGIN + "/invite/{org}/{user}/{token}",
    )
    people(app, "bob", "carol")
    with browser(app) as client:
        url = new_link(app, "carol", purpose="enroll")
        assert urlsplit(url).path.startswith("/invite/acme/carol/")
        page = client.get(urlsplit(url).path)
        assert page.status_code == 200 and "invited" in page.text
        opened = client.post(
            urlsplit(url).path, data={"csrf": csrf_of(page.text)}, headers={"origin": ORIGIN}
        )
        assert opened.headers["location"] == "/s/step"
        assert client.get("/s/step").status_code == 200


def test_secure_cookie_over_https_and_through_a_trusted_proxy_only(web_app: App) -> None:
    url = new_link(web_app)
    with browser(web_app, trusted_proxies=("*",)) as proxied:
        page = proxied.get(path_of(url), headers={"x-forwarded-proto": "https"})
        assert "Secure" in page.headers["set-cookie"]
        # (the test client talks plain http to the app, so it holds back Secure cookies: the
        # proxy's browser would send it)
        form_cookie = page.headers["set-cookie"].split(";", 1)[0]
        opened = proxied.post(
            path_of(url),
            data={"csrf": csrf_of(page.text)},
            headers={
                "cookie": form_cookie,
                "origin": ORIGIN,
                "x-forwarded-proto": "https",
                "x-forwarded-for": "203.0.113.9",
            },
        )
        assert opened.status_code == 303 and "Secure" in opened.headers["set-cookie"]
    with web_app.uow() as uow:
        opening = uow.session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "link.open")
        ).one()
    assert opening["client"] == "203.0.113.9"
    with browser(web_app) as direct:  # nobody trusted: the header does not count
        page = direct.get(
            path_of(new_link(web_app, "alice")), headers={"x-forwarded-proto": "https"}
        )
        assert "Secure" not in page.headers["set-cookie"]


def test_healthz(web_app: App, client: TestClient) -> None:
    ok = client.get("/healthz")
    assert (ok.status_code, ok.text) == (200, "ok")
    assert ok.headers["cache-control"] == "no-store"
    web_app.close()
    web_app.settings = replace(
        web_app.settings, database=Database(url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    )
    for built in ("engine", "session_factory"):
        web_app.__dict__.pop(built, None)
    down = client.get("/healthz")
    assert down.status_code == 503


def test_an_unexpected_error_is_a_plain_500_logged_without_its_message(
    web_app: App, client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    url = new_link(web_app)
    token = url.rsplit("token=", 1)[1]

    def broken(*args: Any) -> Any:
        raise RuntimeError(f"boom {token}")

    monkeypatch.setattr(setup_flow, "look_at_link", broken)
    with caplog.at_level(logging.INFO, logger="mfactl"):
        page = client.get(path_of(url))
    assert page.status_code == 500 and "Something went wrong" in page.text
    assert "Traceback" not in page.text and token not in page.text
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "RuntimeError" in caplog.text and token not in caplog.text


def test_the_access_log_holds_no_token_and_no_secret(
    web_app: App, client: TestClient, caplog: Any, clock: FrozenClock
) -> None:
    with caplog.at_level(logging.INFO, logger="mfactl"):
        url = new_link(web_app)
        token = url.rsplit("token=", 1)[1]
        press(client, url)
        step = client.get(STEP).text
        done = send_code(client, phone_code(uri_of(web_app, step), clock()))
    codes = shown_codes(done.text)
    assert len(codes) == 10
    lines = [r.getMessage() for r in caplog.records if r.name == "mfactl.access"]
    assert any('"GET /mfa/setup?[redacted] HTTP/1.1" 200' in line for line in lines), lines
    assert any('"POST /mfa/setup/step HTTP/1.1" 200' in line for line in lines), lines
    assert token not in caplog.text and shown_secret(step) not in caplog.text
    assert not [c for c in codes if c in caplog.text]
    with web_app.uow() as uow:
        details = [e.details for e in uow.session.scalars(select(AuditEvent))]
    assert token not in repr(details) and shown_secret(step) not in repr(details)


def test_pages_escape_what_they_show(sqlite_app: App) -> None:
    from mfactl.services import orgs
    from mfactl.services import users as users_service

    app = with_links(sqlite_app)
    orgs.add_org(app, "acme", "<script>alert(1)</script> & Co")
    users_service.add_user(app, "acme", "bob", "bob@example.com", name="<b>Bob</b>")
    with browser(app) as client:
        page = client.get(path_of(new_link(app)))
    assert "<script>alert" not in page.text and html.escape("<script>") in page.text
    assert "<b>Bob</b>" not in page.text


def test_every_page_of_a_link_names_its_organization(web_app: App, client: TestClient) -> None:
    """The error pages of a link name its organization as the link page does; a slug that is
    no organization is shown as the link gave it (escaped), and nothing tells whether a token
    exists: a real token under another slug gets the very page a made-up one gets."""
    from markupsafe import escape

    def named(page: Any) -> str:
        found = re.search(r"<header><p>(.*?)</p></header>", page.text, re.S)
        assert found, page.text
        return found[1]

    issuer = str(escape(web_app.settings.user_login.mfa.issuer))
    made_up = "x" * 43
    unknown = client.get(f"/mfa/setup?org=acme&token={made_up}")
    assert unknown.status_code == 404 and named(unknown) == f"{issuer} · Acme"
    odd = client.get(f"/mfa/setup?org=%3Cb%3EBeta&token={made_up}")
    assert odd.status_code == 404 and named(odd) == f"{issuer} · &lt;b&gt;Beta"
    assert "<b>" not in odd.text

    url = new_link(web_app)
    token = url.rsplit("token=", 1)[1]

    def without_nonce(page: Any) -> str:
        return re.sub(r'nonce="[^"]*"', "", page.text)

    real = client.get(f"/mfa/setup?org=beta&token={token}")
    fake = client.get(f"/mfa/setup?org=beta&token={made_up}")
    assert real.status_code == fake.status_code == 404
    assert without_nonce(real) == without_nonce(fake) and named(real) == f"{issuer} · beta"

    forged = client.post(path_of(url), data={}, headers={"origin": ORIGIN})
    assert forged.status_code == 403 and named(forged) == f"{issuer} · Acme"
    press(client, url)
    with browser(web_app) as other:
        elsewhere = other.get(path_of(url))
        assert elsewhere.status_code == 409 and named(elsewhere) == f"{issuer} · Acme"
    new_link(web_app)  # replaces the first link
    replaced = client.get(path_of(url))
    assert replaced.status_code == 410 and named(replaced) == f"{issuer} · Acme"


def test_the_access_log_hides_a_token_carried_in_the_path(sqlite_app: App, caplog: Any) -> None:
    app = with_links(
        sqlite_app,
        reset_url=ORIGIN + "/s/{org}/{token}",
        enroll_url=ORIGIN + "/invite/{org}/{user}/{token}",
    )
    people(app, "bob", "carol")
    reset_path = urlsplit(new_link(app)).path
    enroll_path = urlsplit(new_link(app, "carol", purpose="enroll")).path
    with browser(app) as client, caplog.at_level(logging.INFO, logger="mfactl"):
        assert client.get(reset_path).status_code == 200
        assert client.get(enroll_path).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "mfactl.access"]
    assert any('"GET /s/[org]/[token] HTTP/1.1" 200' in line for line in lines), lines
    assert any('"GET /invite/[org]/[user]/[token] HTTP/1.1" 200' in line for line in lines), lines
    for path in (reset_path, enroll_path):
        assert path.rsplit("/", 1)[1] not in caplog.text


def test_two_replicas_serve_one_flow_request_by_request(web_app: App, clock: FrozenClock) -> None:
    """Behind a load balancer each request may reach another process: two Apps built from the
    same settings (no state shared but the database) take turns, CSRF tokens and all."""
    replica = App(settings=web_app.settings, clock=web_app.clock, actor="test")
    url = new_link(web_app)
    try:
        with browser(web_app) as one, browser(replica) as two:
            # one browser, whichever process answers: its cookies go with it
            page = one.get(path_of(url))
            two.cookies = one.cookies
            opened = two.post(
                path_of(url), data={"csrf": csrf_of(page.text)}, headers={"origin": ORIGIN}
            )
            assert opened.status_code == 303, opened.text
            one.cookies = two.cookies
            step = one.get(STEP)
            assert step.status_code == 200
            code = phone_code(uri_of(web_app, step.text), clock())
            right = two.post(
                STEP, data={"csrf": csrf_of(step.text), "code": code}, headers={"origin": ORIGIN}
            )
            assert right.status_code == 200, right.text
            assert len(shown_codes(right.text)) == 10
            assert "MFA is now active for Acme" in one.get(STEP).text
    finally:
        replica.close()
    assert users.user_status(web_app, "acme", "bob").mfa == "active"
