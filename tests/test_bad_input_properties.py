"""Property-based tests of the parsers that take hostile text: values.yaml, the CSV import and
the code a user types. Any input ends in a documented error or a correct result, never in
another exception. Seeds are derived from each test (derandomize), so CI runs the same examples.
"""

from __future__ import annotations

import csv
import io
import itertools
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mfactl import totp
from mfactl.app import App
from mfactl.config import ConfigError, Settings, load_settings
from mfactl.db.models import Organization, User
from mfactl.errors import MfactlError
from mfactl.services import orgs, users, verification
from mfactl.services.user_import import ImportResult, import_users
from tests.conftest import FrozenClock, make_app
from tests.unit.helpers import enrolled

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- values.yaml ---------------------------------------------------------------------------------

KNOWN_KEYS = [
    "database",
    "url",
    "pool",
    "size",
    "userLogin",
    "mfa",
    "enabled",
    "mandatory",
    "issuer",
    "algorithm",
    "digits",
    "period",
    "validWindow",
    "throttle",
    "baseDelaySeconds",
    "lockAfterFailures",
    "recoveryCodes",
    "count",
    "rememberMe",
    "days",
    "secretStore",
    "activeKey",
    "rollingKey",
    "email",
    "from",
    "transport",
    "smtp",
    "host",
    "port",
    "security",
    "timeoutSeconds",
    "links",
    "resetUrl",
    "enrollUrl",
    "ttlHours",
    "server",
    "trustedProxies",
    "apiKeys",
    "name",
    "orgs",
    "hash",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "SHA1", "MD5", "6", "file", "smtp", "https://x/{token}", "{org}"])
    | st.text(max_size=40)
)
keys_ = st.sampled_from(KNOWN_KEYS) | st.text(max_size=12)
# a bounded depth: a document nested thousands deep is another engineer's case
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys_, inner, max_size=5),
    max_leaves=25,
)


def _load(text: str | bytes) -> Settings | None:
    """The settings, or None after a ConfigError (checked to be a well-formed one)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "values.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        path.chmod(0o600)
        try:
            loaded = load_settings(path, environ={})
        except ConfigError as exc:
            assert exc.message and exc.exit_code == 5
            assert all(isinstance(problem, str) and problem for problem in exc.problems)
            return None
        assert isinstance(loaded, Settings)
        return loaded


@BOUNDED
@given(documents)
def test_values_loader_on_generated_documents(document: object) -> None:
    _load(yaml.safe_dump(document, allow_unicode=True))


@BOUNDED
@given(
    st.dictionaries(
        st.sampled_from(["database", "userLogin", "secretStore", "email", "server"]),
        documents,
        max_size=5,
    )
)
def test_values_loader_on_generated_top_level_mappings(document: dict[str, object]) -> None:
    _load(yaml.safe_dump(document, allow_unicode=True))


@BOUNDED
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-'\"&*!|>%@`#? \t\nabc1.\\")), max_size=80))
def test_values_loader_on_yaml_punctuation(text: str) -> None:
    _load(text)


@BOUNDED
@given(st.binary(max_size=80))
def test_values_loader_on_bytes(data: bytes) -> None:
    _load(data)


# settings a careful administrator writes, each with the attribute path it loads into
GOOD_SETTINGS: dict[str, tuple[str, list[object]]] = {
    "userLogin.mfa.digits": ("user_login.mfa.digits", [6, 8]),
    "userLogin.mfa.period": ("user_login.mfa.period", [10, 30, 120]),
    "userLogin.mfa.algorithm": ("user_login.mfa.algorithm", ["SHA1", "SHA256", "SHA512"]),
    "userLogin.mfa.validWindow": ("user_login.mfa.valid_window", [0, 1, 2]),
    "userLogin.mfa.enabled": ("user_login.mfa.enabled", [True, False]),
    "userLogin.rememberMe.days": ("user_login.remember_me.days", [1, 30, 3650]),
    "email.smtp.port": ("email.smtp.port", [1, 25, 587, 65535]),
    "email.links.ttlHours": ("email.links.ttl_hours", [1, 72]),
    "server.port": ("server.port", [1, 8080]),
}


@st.composite
def nearly_good_values(draw: st.DrawFn) -> tuple[dict[str, object], dict[str, object]]:
    """(a values document, what each setting in it must load as); a slip makes it (doc, {})."""
    chosen = draw(st.lists(st.sampled_from(sorted(GOOD_SETTINGS)), unique=True, max_size=6))
    document: dict[str, object] = {}
    expected: dict[str, object] = {}
    for path in chosen:
        attribute, good = GOOD_SETTINGS[path]
        value = draw(st.sampled_from(good))
        *parents, leaf = path.split(".")
        node = document
        for parent in parents:
            node = node.setdefault(parent, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
        expected[attribute] = value
    if chosen and draw(st.integers(0, 3)) == 0:  # one slip: a bad value or a misspelt key
        *parents, leaf = draw(st.sampled_from(chosen)).split(".")
        node = document
        for parent in parents:
            node = node[parent]  # type: ignore[index]
        if draw(st.booleans()):
            node[leaf] = draw(scalars)  # type: ignore[index]
        else:
            node[leaf + "x"] = node.pop(leaf)  # type: ignore[attr-defined]
        expected = {}
    return document, expected


@BOUNDED
@given(nearly_good_values())
def test_values_loader_on_nearly_good_documents(
    drawn: tuple[dict[str, object], dict[str, object]],
) -> None:
    document, expected = drawn
    loaded = _load(yaml.safe_dump(document))
    if expected or not document:  # every setting good: it loads, each as written
        assert loaded is not None
        for attribute, value in expected.items():
            found: object = loaded
            for name in attribute.split("."):
                found = getattr(found, name)
            assert found == value, attribute


# --- the CSV import ------------------------------------------------------------------------------

COLUMNS = ["handle", "email", "name", "admin", "totp_secret", "algorithm", "digits", "period"]
cells = st.sampled_from(
    [
        "",
        "zed",
        "z@example.com",
        "true",
        "maybe",
        "SHA1",
        "MD5",
        "6",
        "7",
        "30",
        "0",
        "-1",
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "JBSWY3DP",
        "Zoë",
        "a\u202eb",
        "a\x85b",
        "\x1b[2J",
    ]
) | st.text(max_size=12)


@st.composite
def csv_files(draw: st.DrawFn) -> str:
    header = draw(st.lists(st.sampled_from(COLUMNS) | st.text(max_size=8), min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 1), max_size=5))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@st.composite
def nearly_good_csv_files(draw: st.DrawFn) -> str:
    """Files an administrator would write, some with a slip: most import, some must not."""
    optional = draw(st.lists(st.sampled_from(COLUMNS[2:]), unique=True, max_size=6))
    header = ["handle", "email", *optional]
    good = {
        "name": st.sampled_from(["", "Zed", "Zoë Ålund", "O'Brien, Pat"]),
        "admin": st.sampled_from(["", "true", "no", "1", "0", "yes"]),
        "totp_secret": st.just("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        "algorithm": st.sampled_from(["SHA1", "SHA256", "SHA512"]),
        "digits": st.sampled_from(["6", "8"]),
        "period": st.sampled_from(["10", "30", "120"]),
    }
    handles = draw(st.lists(st.from_regex(r"\A[a-z][a-z0-9]{0,7}\Z"), max_size=4))
    rows = []
    for handle in handles:
        row = {"handle": handle, "email": f"{handle}@example.com"}
        row.update({column: draw(good[column]) for column in optional})
        if draw(st.integers(0, 9)) == 0:  # a slip in one cell
            row[draw(st.sampled_from(header))] = draw(cells)
        rows.append([row[column] for column in header])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture(scope="module")
def import_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    from mfactl.db.engine import make_engine, upgrade_schema
    from tests.conftest import _wipe

    url = f"sqlite:///{tmp_path_factory.mktemp('import') / 'mfactl.db'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    from mfactl.crypto import generate_key

    application = make_app(url, FrozenClock(), generate_key())
    _wipe(application)
    yield application
    application.close()


_orgs = itertools.count()


def _user_count(app: App) -> int:
    with app.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(User)) or 0)


def _check_import(app: App, text: str) -> None:
    slug = f"org{next(_orgs)}"
    orgs.add_org(app, slug, slug)
    before = _user_count(app)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users.csv"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            result = import_users(app, slug, path)
        except MfactlError as exc:
            assert exc.exit_code == 2 and exc.message, exc  # a bad file is a usage error
            assert _user_count(app) == before  # all or none
            return
    assert isinstance(result, ImportResult) and result.org == slug
    data_rows = [row for row in csv.reader(io.StringIO(text))][1:]
    assert result.imported == len([row for row in data_rows if any(cell for cell in row)])
    assert _user_count(app) == before + result.imported
    with app.uow() as uow:
        stored = uow.session.scalars(
            select(User.handle).join(Organization).where(Organization.slug == slug)
        ).all()
    header = next(csv.reader(io.StringIO(text)))
    handles = [row[header.index("handle")].strip().lower() for row in data_rows if any(row)]
    assert sorted(stored) == sorted(handles)


@BOUNDED
@given(csv_files())
def test_csv_import_on_generated_files(import_app: App, text: str) -> None:
    _check_import(import_app, text)


@BOUNDED
@given(nearly_good_csv_files())
def test_csv_import_on_nearly_good_files(import_app: App, text: str) -> None:
    _check_import(import_app, text)


@BOUNDED
@given(st.text(max_size=120))
def test_csv_import_on_arbitrary_text(import_app: App, text: str) -> None:
    _check_import(import_app, text)


# --- the code a user types -----------------------------------------------------------------------

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
MOMENT = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
codes = (
    st.text(max_size=20)
    | st.text(alphabet="0123456789 \t\n٠١२३", max_size=12)
    | st.from_regex(r"\A\s*[0-9]{6,8}\s*\Z")
)


@BOUNDED
@given(codes, st.sampled_from([6, 8]))
def test_looks_like_a_code_says_yes_only_to_digits(code: str, digits: int) -> None:
    looks = totp.looks_like_a_code(code, digits)
    typed = code.strip().replace(" ", "")
    assert looks is (len(typed) == digits and all(c in "0123456789" for c in typed))


@BOUNDED
@given(
    codes,
    st.sampled_from(["SHA1", "SHA256", "SHA512"]),
    st.sampled_from([6, 8]),
    st.integers(0, 3),
    st.booleans(),
)
def test_match_finds_a_step_only_for_the_right_code(
    code: str, algorithm: str, digits: int, window: int, drift: bool
) -> None:
    params = totp.TotpParams(algorithm, digits, 30)
    found = totp.match(SECRET, code, MOMENT, params, window, look_for_drift=drift)
    now = totp.step_at(MOMENT, 30)
    if found.step is not None:
        assert abs(found.step - now) <= window
        assert totp.code_at_step(SECRET, found.step, params) == code.strip().replace(" ", "")
    if found.drift_steps is not None and found.step is None:
        assert abs(found.drift_steps) > window


@pytest.fixture(scope="module")
def verify_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    from mfactl.crypto import generate_key
    from mfactl.db.engine import make_engine, upgrade_schema

    url = f"sqlite:///{tmp_path_factory.mktemp('verify') / 'mfactl.db'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    application = make_app(url, FrozenClock(), generate_key())
    orgs.add_org(application, "acme", "Acme")
    users.add_user(application, "acme", "alice", "alice@example.com")
    users.add_user(application, "acme", "bob", "bob@example.com")
    enrolled(application, "alice")
    yield application
    application.close()


@BOUNDED
@given(codes, st.sampled_from(["alice", "bob"]), st.booleans())
def test_verify_answers_every_string_with_a_documented_result(
    verify_app: App, code: str, user: str, explain: bool
) -> None:
    result = verification.verify(verify_app, "acme", user, code, explain=explain)
    assert result.result in verification.RESULTS
    if user == "bob":
        assert result.result == "not_enrolled"
    elif not totp.looks_like_a_code(code, 6):
        assert result.result in ("malformed", "throttled", "locked")
    assert result.result != "ok" or totp.looks_like_a_code(code, 6)
