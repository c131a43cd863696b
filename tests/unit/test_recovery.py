"""Recovery codes on each engine: issue, store, use once, count, administer, end with a reset."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from mfactl.app import App
from mfactl.db.models import AuditEvent, MfaFailure, MfaSecret, OutboxMessage, RecoveryCode, User
from mfactl.errors import Conflict
from mfactl.services import (
    delivery,
    enrollment,
    links,
    policy,
    recovery,
    reset,
    verification,
)
from mfactl.services.listing import list_users
from mfactl.services.selection import UserFilter
from tests.conftest import FrozenClock
from tests.unit.helpers import count, enrolled, mails, people, phone_code, set_login, token_in


def _set(app: App, **recovery_codes: object) -> None:
    mfa = app.settings.user_login.mfa
    set_login(app, mfa={"recovery_codes": replace(mfa.recovery_codes, **recovery_codes)})


def _listed(app: App, handle: str, flt: UserFilter | None = None) -> int | None:
    [row] = [r for r in list_users(app, flt or UserFilter()) if r["user"] == handle]
    return row["recovery_codes"]


def test_codes_have_the_promised_shape_and_strength() -> None:
    code = recovery.new_code()
    assert len(code) == 14 and code[4] == code[9] == "-"
    assert not set(recovery.ALPHABET) & set("01ilo")
    # 12 symbols of 31: 59 bits, at least the 50 promised
    assert recovery.LENGTH * math.log2(len(set(recovery.ALPHABET))) >= 59
    raw = code.replace("-", "")
    assert recovery.normalized(f"  {raw[:6].upper()} {raw[6:]} ") == raw
    assert recovery.normalized(code.upper().replace("-", " - ")) == raw
    assert recovery.normalized(raw[:-1]) is None  # too short
    assert recovery.normalized(raw[:-1] + "0") is None  # a look-alike never issued
    assert recovery.normalized("x" * 10_000) is None
    assert len({recovery.new_code() for _ in range(1000)}) == 1000


def test_generate_use_once_and_count_down(mail_app: App, clock: FrozenClock) -> None:
    app = mail_app
    people(app, "alice")
    enrolled(app, "alice")
    made = recovery.generate(app, "acme", "alice")
    assert len(made.codes) == 10 and len(set(made.codes)) == 10
    assert recovery.status(app, "acme", "alice").remaining == 10
    assert _listed(app, "alice") == 10

    first = made.codes[0]
    typed = first.upper().replace("-", " ")  # however it is typed
    used = recovery.use(app, "acme", "alice", typed)
    assert used.result == "ok" and used.recovery_codes_left == 9
    again = recovery.use(app, "acme", "alice", first)
    assert again.result == "wrong"  # used up: refused, and counted like any wrong code
    st = recovery.status(app, "acme", "alice")
    assert (st.remaining, st.created_at) == (9, made.created_at)
    assert _listed(app, "alice") == 9
    clock.advance(60)  # past the back-off of the refused reuse
    assert recovery.use(app, "acme", "alice", made.codes[1]).result == "ok"
    assert recovery.status(app, "acme", "alice").remaining == 8
    assert _listed(app, "alice") == 8

    with app.uow() as uow:
        used_events = uow.session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "mfa.recovery_code_used")
        ).all()
    assert list(used_events) == [{"remaining": 9}, {"remaining": 8}]

    # the notification email: queued with the use, sent by the outbox, both parts parse
    report = delivery.deliver(app)
    assert len(report.sent) == 2
    [notice, *_] = mails(app)
    assert notice["Subject"] == "A recovery code was used for acme"
    assert notice["To"] == "alice@example.com"
    plain = notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = notice.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "you have 9 left" in plain and "<strong>9</strong> left" in html
    assert "If this was not you" in plain and "If this was not you" in html
    assert first not in plain and first not in html


def test_a_new_set_replaces_the_old_and_revoke_ends_it(app: App) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    old = recovery.generate(app, "acme", "alice").codes
    new = recovery.generate(app, "acme", "alice").codes
    assert recovery.use(app, "acme", "alice", old[0]).result == "wrong"
    assert recovery.revoke(app, "acme", "alice") == 10
    assert recovery.use(app, "acme", "alice", new[0]).result == "throttled"
    verification.unlock(app, "acme", "alice")
    assert recovery.use(app, "acme", "alice", new[0]).result == "wrong"
    assert recovery.status(app, "acme", "alice").to_json() == {
        "org": "acme",
        "user": "alice",
        "remaining": 0,
        "created_at": None,
    }
    assert _listed(app, "alice") is None


def test_generate_needs_active_mfa_and_the_feature_on(app: App) -> None:
    people(app, "alice", "bob")
    with pytest.raises(Conflict, match="MFA is not active for acme/alice") as caught:
        recovery.generate(app, "acme", "alice")
    assert caught.value.exit_code == 4
    enrollment.enable_user(app, "acme", "bob")  # pending is not active either
    with pytest.raises(Conflict, match="not active"):
        recovery.generate(app, "acme", "bob")
    enrolled(app, "alice")
    _set(app, count=0)
    with pytest.raises(Conflict, match="turned off"):
        recovery.generate(app, "acme", "alice")
    assert count(app, RecoveryCode) == 0


def test_two_concurrent_uses_of_one_code_give_one_ok(app: App) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    code = recovery.generate(app, "acme", "alice").codes[0]
    barrier = threading.Barrier(2)
    results: list[str] = []

    def use() -> None:
        barrier.wait()
        results.append(recovery.use(app, "acme", "alice", code).result)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok", "wrong"]
    assert recovery.status(app, "acme", "alice").remaining == 9


def test_a_wrong_recovery_code_is_counted_like_a_wrong_totp_code(
    app: App, clock: FrozenClock
) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    enrolled(app, "bob")
    recovery.generate(app, "acme", "alice")
    clock.advance(120)
    by_code = recovery.use(app, "acme", "alice", "aaaa-bbbb-cccc")
    by_totp = verification.verify(app, "acme", "bob", "000000")
    assert by_code.result == by_totp.result == "wrong"
    assert by_code.retry_after_seconds == by_totp.retry_after_seconds

    def throttle_state(handle: str) -> tuple[int, int, bool]:
        with app.uow() as uow:
            user_id = uow.session.scalar(select(User.id).where(User.handle == handle))
            secret = uow.session.get(MfaSecret, user_id)
            assert secret is not None
            failures = uow.session.scalars(
                select(MfaFailure.id).where(MfaFailure.user_id == user_id)
            ).all()
            return secret.failed_attempts, len(failures), secret.locked

    assert throttle_state("alice") == throttle_state("bob") == (1, 1, False)
    # the throttle that follows is the same for both kinds of code
    assert recovery.use(app, "acme", "alice", "aaaa-bbbb-cccd").result == "throttled"
    assert verification.verify(app, "acme", "alice", "123456").result == "throttled"
    # a malformed code is neither compared nor counted
    clock.advance(60)
    assert recovery.use(app, "acme", "alice", "not-a-code!").result == "malformed"
    assert throttle_state("alice") == (1, 1, False)


def test_the_day_budget_holds_for_recovery_codes_too(app: App, clock: FrozenClock) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    codes = recovery.generate(app, "acme", "alice").codes
    budget = app.settings.user_login.mfa.throttle.max_failures_per_day
    for n in range(budget):
        clock.advance(1000)
        wrong = f"aaaa-bbbb-{recovery.ALPHABET[n] * 4}"
        assert recovery.use(app, "acme", "alice", wrong).result == "wrong"
    clock.advance(1000)
    assert recovery.use(app, "acme", "alice", codes[0]).result == "throttled"


def test_results_for_users_who_cannot_use_a_code(app: App) -> None:
    people(app, "alice", "bob")
    assert recovery.use(app, "acme", "alice", "aaaa-bbbb-cccc").result == "not_enrolled"
    enrolled(app, "bob")
    recovery.generate(app, "acme", "bob")
    with app.uow() as uow:
        uow.session.execute(text("UPDATE mfa_secrets SET locked = :t"), {"t": True})
        uow.commit()
    assert recovery.use(app, "acme", "bob", "aaaa-bbbb-cccc").result == "locked"


def test_plaintext_codes_are_nowhere_in_the_database(app: App, tmp_path: Path) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    codes = recovery.generate(app, "acme", "alice").codes
    assert recovery.use(app, "acme", "alice", codes[0]).ok
    recovery.use(app, "acme", "alice", "aaaa-bbbb-cccc")
    needles = [c for code in codes for c in (code, code.replace("-", ""), code.upper())]
    with app.engine.connect() as conn:
        tables = ("recovery_codes", "audit_events", "outbox", "mfa_secrets", "mfa_failures")
        dumped = repr([conn.execute(text(f"SELECT * FROM {t}")).all() for t in tables])
    assert not [n for n in needles if n in dumped]
    url = make_url(app.settings.database.url)
    if url.get_backend_name() == "sqlite":
        app.engine.dispose()
        raw = Path(url.database or "").read_bytes()
        for name in ("-wal", "-journal"):
            extra = Path(f"{url.database}{name}")
            raw += extra.read_bytes() if extra.exists() else b""
        assert not [n for n in needles if n.encode() in raw]


def test_a_hash_the_attacker_computed_does_not_work(app: App) -> None:
    """Write access to the database alone mints no code: neither a plain hash nor an HMAC
    under any key but the one derived from the secret store."""
    people(app, "alice")
    enrolled(app, "alice")
    recovery.generate(app, "acme", "alice")
    code = "abcd-efgh-jkmn"
    raw = recovery.normalized(code)
    assert raw is not None
    with app.uow() as uow:
        alice = uow.session.scalars(select(User).where(User.handle == "alice")).one()
        forged = [
            hashlib.sha256(raw.encode()).hexdigest(),
            hashlib.sha256(f"{alice.uid}:{raw}".encode()).hexdigest(),
            hmac.new(b"guessed key", f"{alice.uid}:{raw}".encode(), hashlib.sha256).hexdigest(),
        ]
        uow.session.execute(
            insert(RecoveryCode),
            [
                {"user_id": alice.id, "code_hash": h, "created_at": app.now(), "used_at": None}
                for h in forged
            ],
        )
        uow.commit()
    result = recovery.use(app, "acme", "alice", code)
    assert result.result == "wrong"


def test_a_row_moved_onto_another_user_is_no_code_of_theirs(app: App) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    enrolled(app, "bob")
    code = recovery.generate(app, "acme", "alice").codes[0]
    with app.uow() as uow:
        bob = uow.session.scalar(select(User.id).where(User.handle == "bob"))
        uow.session.execute(text("UPDATE recovery_codes SET user_id = :b"), {"b": bob})
        uow.commit()
    assert recovery.use(app, "acme", "bob", code).result == "wrong"


def test_reset_ends_them_in_its_transaction(app: App) -> None:
    people(app, "alice", "bob")
    enrolled(app, "alice")
    enrolled(app, "bob")
    code = recovery.generate(app, "acme", "alice").codes[0]
    recovery.generate(app, "acme", "bob")
    reset.reset_user(app, "acme", "alice", "lost phone", send_email=False)
    assert recovery.status(app, "acme", "alice").remaining == 0
    assert recovery.use(app, "acme", "alice", code).result == "not_enrolled"
    assert _listed(app, "alice") is None
    reset.reset_users(app, UserFilter(org="acme"), "all phones lost", send_email=False)
    assert count(app, RecoveryCode) == 0


def test_confirm_and_confirm_link_make_a_first_set_when_on(mail_app: App) -> None:
    app = mail_app
    people(app, "alice", "bob", "carol")
    uri = enrollment.enable_user(app, "acme", "alice").otpauth_uri
    assert uri is not None
    confirmed = enrollment.confirm_user(
        app, "acme", "alice", phone_code(uri, app.now()), recovery_codes=True
    )
    assert len(confirmed.recovery_codes) == 10
    assert recovery.use(app, "acme", "alice", confirmed.recovery_codes[3]).ok

    reset.send_enroll_email(app, "acme", "bob")
    token = token_in(mails(app)[-1])
    opened = links.open_link(app, "acme", token)
    done = links.confirm_link(app, "acme", token, phone_code(opened.otpauth_uri, app.now()))
    assert len(done.recovery_codes) == 10
    assert recovery.status(app, "acme", "bob").remaining == 10

    _set(app, count=0)
    uri = enrollment.enable_user(app, "acme", "carol").otpauth_uri
    assert uri is not None
    off = enrollment.confirm_user(
        app, "acme", "carol", phone_code(uri, app.now()), recovery_codes=True
    )
    assert off.recovery_codes == ()
    assert _listed(app, "carol") is None


def test_login_requirement_says_when_the_user_is_down_to_the_last_codes(app: App) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    need = policy.login_requirement(app, "acme", "alice")
    assert (need.decision, need.recovery_codes_left, need.recovery_codes_low) == (
        "code",
        None,
        True,
    )
    _set(app, count=3)
    codes = recovery.generate(app, "acme", "alice").codes
    need = policy.login_requirement(app, "acme", "alice")
    assert (need.recovery_codes_left, need.recovery_codes_low) == (3, False)
    assert recovery.use(app, "acme", "alice", codes[0]).ok
    need = policy.login_requirement(app, "acme", "alice")
    assert (need.recovery_codes_left, need.recovery_codes_low) == (2, True)
    assert need.needs_code and need.reason == "MFA is active for this user"


def test_policy_can_require_them_and_the_low_filter_finds_who_needs_more(app: App) -> None:
    people(app, "alice", "bob", "carol")
    enrolled(app, "alice")
    enrolled(app, "bob")
    recovery.generate(app, "acme", "alice")
    assert policy.check_policy(app) == []
    _set(app, required=True)
    [bob] = policy.check_policy(app)
    assert (bob.user, bob.mfa, bob.reason) == ("bob", "active", policy.NO_RECOVERY_CODES)
    listed = {r["user"]: r["compliant"] for r in list_users(app, UserFilter())}
    assert listed == {"alice": True, "bob": False, "carol": True}
    noncompliant = [r["user"] for r in list_users(app, UserFilter(noncompliant=True))]
    assert noncompliant == ["bob"]

    low = [r["user"] for r in list_users(app, UserFilter(recovery_codes_low=True))]
    assert low == ["bob"]  # carol has no MFA: no codes to run low on
    _set(app, count=3)
    codes = recovery.generate(app, "acme", "alice").codes
    assert recovery.use(app, "acme", "alice", codes[0]).ok
    low = [r["user"] for r in list_users(app, UserFilter(recovery_codes_low=True))]
    assert low == ["alice", "bob"]


def test_generating_and_revoking_are_audited_without_the_codes(app: App) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    codes = recovery.generate(app, "acme", "alice").codes
    recovery.revoke(app, "acme", "alice")
    with app.uow() as uow:
        events = uow.session.execute(
            select(AuditEvent.action, AuditEvent.details).order_by(AuditEvent.id)
        ).all()
    details = {action: d for action, d in events}
    assert details["mfa.recovery_codes_generate"] == {"count": 10, "replaced_unused": 0}
    assert details["mfa.recovery_codes_revoke"] == {"revoked_unused": 10}
    assert not [c for c in codes if c in repr(events)]


def test_no_outbox_mail_without_an_address(app: App) -> None:
    people(app, "alice")
    enrolled(app, "alice")
    codes = recovery.generate(app, "acme", "alice").codes
    with app.uow() as uow:
        uow.session.execute(text("UPDATE users SET email = ''"))
        uow.commit()
    assert recovery.use(app, "acme", "alice", codes[0]).ok
    assert count(app, OutboxMessage) == 0
