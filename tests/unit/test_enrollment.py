"""Enrollment: a pending secret, its URI, activation by a correct code, and the refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from mfactl.app import App
from mfactl.db.models import AuditEvent, MfaSecret, User
from mfactl.errors import Conflict
from mfactl.services import enrollment, lookup
from tests.unit.helpers import people, phone_code, secret_of


def _begin(app: App, handle: str = "alice") -> str:
    with app.uow() as uow:
        org, user = lookup.get_org_user(uow.session, "acme", handle)
        uri = enrollment.begin_enrollment(uow.session, app, org, user)
        uow.commit()
    return uri


def _confirm(app: App, code: str, handle: str = "alice") -> None:
    with app.uow() as uow:
        org, user = lookup.get_org_user(uow.session, "acme", handle)
        enrollment.confirm_enrollment(uow.session, app, org, user, code)
        uow.commit()


def _secret(app: App, handle: str = "alice") -> MfaSecret:
    with app.uow() as uow:
        user = uow.session.scalars(select(User).where(User.handle == handle)).one()
        row = uow.session.get(MfaSecret, user.id)
        assert row is not None
        uow.session.expunge(row)
        return row


def test_begin_then_confirm(app: App) -> None:
    people(app, "alice")
    uri = _begin(app)
    assert uri.startswith("otpauth://totp/Example%20Platform:alice?secret=")
    assert "issuer=Example%20Platform" in uri
    row = _secret(app)
    assert row.state == "pending" and row.key_id == app.secrets.active_key_id
    assert secret_of(uri) not in row.ciphertext
    _confirm(app, phone_code(uri, app.now()))
    row = _secret(app)
    assert row.state == "active" and row.confirmed_at == app.now()
    assert row.last_used_step == int(app.now().timestamp()) // 30
    # the helpers write no audit event: the caller does
    with app.uow() as uow:
        assert uow.session.scalars(select(AuditEvent.action)).all() == ["org.add", "user.add"]


def test_replacing_a_pending_secret_and_refusals(app: App) -> None:
    people(app, "alice")
    first = _begin(app)
    second = _begin(app)
    assert secret_of(first) != secret_of(second)
    with pytest.raises(Conflict, match=r"^the code is wrong for acme/alice"):
        _confirm(app, phone_code(first, app.now()))
    _confirm(app, phone_code(second, app.now(), offset_steps=-1))  # inside the window
    with pytest.raises(Conflict, match=r"^MFA is already active for acme/alice$"):
        _begin(app)
    with pytest.raises(Conflict, match=r"^MFA is already active for acme/alice$"):
        _confirm(app, phone_code(second, app.now()))


def test_no_pending_secret_and_policy_off(app: App) -> None:
    people(app, "alice")
    with pytest.raises(Conflict, match=r"^acme/alice has no pending MFA enrollment$"):
        _confirm(app, "123456")
    login = app.settings.user_login
    app.settings = replace(
        app.settings, user_login=replace(login, mfa=replace(login.mfa, enabled=False))
    )
    with pytest.raises(Conflict, match=r"^MFA is disabled by policy \(userLogin.mfa.enabled"):
        _begin(app)


def test_wrong_code_tells_how_far_the_clock_is_off(app: App) -> None:
    people(app, "alice")
    uri = _begin(app)
    with pytest.raises(Conflict) as raised:
        _confirm(app, phone_code(uri, app.now(), offset_steps=-4))
    assert raised.value.message == (
        "the code is wrong for acme/alice (it was valid 4 steps earlier: "
        "the device clock is about 120 s behind)"
    )
    assert _secret(app).state == "pending"


def test_use_cases_audit_without_the_secret(app: App) -> None:
    people(app, "alice")
    started = enrollment.enable_user(app, "acme", "alice@example.com")
    assert started.state == "pending" and started.otpauth_uri
    done = enrollment.confirm_user(app, "acme", "alice", phone_code(started.otpauth_uri, app.now()))
    assert done.state == "active"
    with app.uow() as uow:
        events = uow.session.execute(
            select(AuditEvent.action, AuditEvent.details).order_by(AuditEvent.id)
        ).all()
    assert [action for action, _ in events][-2:] == ["mfa.enroll", "mfa.confirm"]
    assert secret_of(started.otpauth_uri) not in repr(events)


def test_confirmation_needs_the_whole_code(app: App) -> None:
    people(app, "alice")
    uri = _begin(app)
    code = phone_code(uri, app.now())
    for partial in ("", code[:1], code[:5]):
        with pytest.raises(Conflict, match=r"^the code is wrong for acme/alice$"):
            _confirm(app, partial)
    assert _secret(app).state == "pending"
    _confirm(app, f"{code[:3]} {code[3:]}")  # as the app shows it
    assert _secret(app).state == "active"
