from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mfactl.config import (
    LEAVES,
    OTHER_VARIABLES,
    SecretStoreSettings,
    Settings,
    Throttle,
    env_name,
    key_id,
    load_settings,
)
from mfactl.crypto import generate_key
from mfactl.errors import ConfigError


def problems_of(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "values.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {})
    assert caught.value.exit_code == 5
    return caught.value.problems or [caught.value.message]


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.source is None
    assert settings.database.url == "sqlite:///mfactl.db"
    assert settings.user_login.mfa.digits == 6
    assert settings.user_login.mfa.throttle.max_delay_seconds == 900
    assert settings.user_login.remember_me.days == 30
    assert settings.email.links.ttl_hours == 72


def test_file_values_and_environment_overrides(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "values.yaml"
    path.write_text(
        "userLogin:\n  mfa:\n    digits: 8\n    algorithm: sha256\n"
        "email:\n  from: 'Ops <ops@example.com>'\n  smtp: {port: 2525}\n"
    )
    settings = load_settings(
        path,
        environ={
            "MFACTL_SECRETSTORE_ACTIVEKEY": key,
            "MFACTL_USERLOGIN_MFA_MANDATORY": "true",
            "MFACTL_EMAIL_SMTP_PASSWORD": "12345",
            "MFACTL_DATABASE_URL": "postgresql+psycopg://u@h/db",
        },
    )
    assert settings.user_login.mfa.digits == 8
    assert settings.user_login.mfa.algorithm == "SHA256"
    assert settings.user_login.mfa.mandatory is True
    assert settings.email.sender == "Ops <ops@example.com>"
    assert settings.email.smtp.port == 2525
    assert settings.email.smtp.password == "12345"  # stays a string
    assert settings.secret_store.active_key == key
    assert settings.database.url == "postgresql+psycopg://u@h/db"


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    key = generate_key()
    problems = problems_of(
        "userLogin:\n  mfa:\n    digits: 7\n    period: soon\n    enabled: 'maybe'\n"
        "  rememberMe: {days: 0}\n"
        f"secretStore: {{activeKey: '{key}', rollingKey: '{key}'}}\n"
        "email: {transport: pigeon, colour: blue}\n",
        tmp_path,
    )
    assert "userLogin.mfa.digits: must be 6 or 8" in problems
    assert "userLogin.mfa.period: must be a whole number" in problems
    assert "userLogin.mfa.enabled: must be true or false" in problems
    assert "userLogin.rememberMe.days: must be at least 1" in problems
    assert "email.transport: must be smtp or file" in problems
    assert "email.colour: unknown setting" in problems
    assert "secretStore.rollingKey: is the same key as secretStore.activeKey" in problems


def test_invalid_fernet_key(tmp_path: Path) -> None:
    problems = problems_of("secretStore: {activeKey: 'not-a-key'}\n", tmp_path)
    assert problems == [
        "secretStore.activeKey: is not a valid Fernet key "
        "(expected 32 url-safe base64-encoded bytes)"
    ]


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    [message] = problems_of("userLogin:\n  mfa: [\n", tmp_path)
    assert "is not valid YAML at line" in message


def test_section_of_wrong_type(tmp_path: Path) -> None:
    assert problems_of("userLogin: 3\n", tmp_path) == ["userLogin: must be a mapping"]


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    problems = problems_of("{}\n", tmp_path, {"MFACTL_USERLOGIN_MFA_DIGITS": "seven"})
    assert problems == ["userLogin.mfa.digits: must be 6 or 8 (from MFACTL_USERLOGIN_MFA_DIGITS)"]


def test_key_files_are_read(tmp_path: Path) -> None:
    active, rolling = generate_key(), generate_key()
    (tmp_path / "active.key").write_text(active + "\n")
    (tmp_path / "rolling.key").write_text(rolling)
    path = tmp_path / "values.yaml"
    path.write_text("secretStore: {activeKeyFile: active.key, rollingKeyFile: rolling.key}\n")
    settings = load_settings(path, environ={})
    assert settings.secret_store.active_key == active
    assert settings.secret_store.rolling_key == rolling
    assert key_id(active) != key_id(rolling)


def test_warns_when_a_file_with_keys_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(f"secretStore: {{activeKey: '{generate_key()}'}}\n")
    path.chmod(0o644)
    assert any("chmod 600" in w for w in load_settings(path, environ={}).warnings)
    path.chmod(0o600)
    assert load_settings(path, environ={}).warnings == ()


def test_warns_when_a_key_file_is_readable_by_others(tmp_path: Path) -> None:
    key_file = tmp_path / "active.key"
    key_file.write_text(generate_key())
    path = tmp_path / "values.yaml"
    path.write_text("secretStore: {activeKeyFile: active.key}\n")
    path.chmod(0o644)  # no key in it: no warning for it
    key_file.chmod(0o644)
    assert load_settings(path, environ={}).warnings == (
        f"{key_file} holds a secret key and is readable by other users; run: chmod 600 {key_file}",
    )
    key_file.chmod(0o600)
    assert load_settings(path, environ={}).warnings == ()


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o660])
def test_a_values_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("userLogin: {mfa: {digits: 8}}\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        load_settings(path, environ={})
    assert refused.value.message == (
        f"values file {path} can be written by users other than its owner; run: chmod go-w {path}"
    )
    path.chmod(0o644)  # readable by others, with no key in it: fine
    assert load_settings(path, environ={}).user_login.mfa.digits == 8


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_a_key_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    (tmp_path / "active.key").write_text(generate_key())
    (tmp_path / "rolling.key").write_text(generate_key())
    (tmp_path / "rolling.key").chmod(mode)
    (tmp_path / "active.key").chmod(0o600)
    text = "secretStore: {activeKeyFile: active.key, rollingKeyFile: rolling.key}\n"
    assert problems_of(text, tmp_path) == [
        f"secretStore.rollingKeyFile: {tmp_path / 'rolling.key'} can be written by users other "
        f"than its owner; run: chmod go-w {tmp_path / 'rolling.key'}"
    ]
    (tmp_path / "rolling.key").chmod(0o600)
    (tmp_path / "active.key").chmod(mode)
    assert [p.split(":")[0] for p in problems_of(text, tmp_path)] == ["secretStore.activeKeyFile"]


def test_a_templates_folder_others_can_write_is_refused_and_so_is_a_file_in_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "templates"
    (folder / "parts").mkdir(parents=True)
    (folder / "reset.txt").write_text("Hello {{ name }}\n")
    (folder / "parts" / "footer.txt").write_text("--\n")
    text = f"email: {{templatesDir: {folder}}}\n"
    folder.chmod(0o777)
    (folder / "parts" / "footer.txt").chmod(0o664)
    refusal = "can be written by users other than its owner; run: chmod go-w"
    assert problems_of(text, tmp_path) == [
        f"email.templatesDir: {folder} {refusal} {folder}",
        f"email.templatesDir: {folder / 'parts' / 'footer.txt'} {refusal} "
        f"{folder / 'parts' / 'footer.txt'}",
    ]
    folder.chmod(0o755)
    (folder / "parts" / "footer.txt").chmod(0o644)
    (folder / "reset.txt").chmod(0o646)
    assert problems_of(text, tmp_path) == [
        f"email.templatesDir: {folder / 'reset.txt'} {refusal} {folder / 'reset.txt'}"
    ]
    (folder / "reset.txt").chmod(0o644)
    path = tmp_path / "values.yaml"
    assert load_settings(path, environ={}).email.templates_dir == str(folder)


def test_a_pages_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "done.html").write_text("<p>done</p>\n")
    text = f"server: {{templatesDir: {folder}}}\n"
    (folder / "done.html").chmod(0o664)
    refusal = "can be written by users other than its owner; run: chmod go-w"
    assert problems_of(text, tmp_path) == [
        f"server.templatesDir: {folder / 'done.html'} {refusal} {folder / 'done.html'}"
    ]


@pytest.mark.parametrize(
    ("host", "security", "warned"),
    [
        ("mail.example.com", "none", True),
        ("mail.example.com", "starttls", False),
        ("mail.example.com", "tls", False),
        ("127.0.0.1", "none", False),  # a relay on this host: nothing crosses a network
    ],
)
def test_warns_when_the_smtp_password_would_cross_the_network_in_clear(
    host: str, security: str, warned: bool
) -> None:
    environ = {
        "MFACTL_EMAIL_SMTP_HOST": host,
        "MFACTL_EMAIL_SMTP_SECURITY": security,
        "MFACTL_EMAIL_SMTP_USERNAME": "mailer",
        "MFACTL_EMAIL_SMTP_PASSWORD": "pw",
    }
    warnings = load_settings(environ=environ).warnings
    assert any("goes over the network unencrypted" in w for w in warnings) is warned
    assert all("pw" not in w.split() for w in warnings)


def test_warns_when_a_file_with_the_smtp_password_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("email: {smtp: {password: pw}}\n")
    path.chmod(0o644)
    assert load_settings(path, environ={}).warnings == (
        f"{path} holds secret keys and is readable by other users; run: chmod 600 {path}",
    )
    path.write_text("email: {smtp: {username: mailer}}\n")  # no secret in it
    assert load_settings(path, environ={}).warnings == ()


def test_a_key_in_the_wrong_place_is_not_quoted_back(tmp_path: Path) -> None:
    key = generate_key()
    for text in (f"secretStore:\n  {key}: 1\n", f"secretStore:\n  activeKey: !{key}\n"):
        path = tmp_path / "values.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as raised:
            load_settings(path, environ={})
        shown = raised.value.message + " ".join(raised.value.problems)
        assert key not in shown and "[key removed]" in shown


def _hidden(prefix: str, here: str) -> str:
    where = f"{prefix}." if prefix else ""
    message = f"unknown setting (its name may be a key: not shown; known here: {here})"
    return f"{where}[key removed]: {message}"


SECRET_STORE_HERE = "activeKey, activeKeyFile, rollingKey, rollingKeyFile"


def test_an_unknown_setting_named_like_a_key_is_not_quoted(tmp_path: Path) -> None:
    # many keys, because a rule that looks at the letters would pass for most keys and fail
    # for a few (a first part of only letters once got quoted)
    for _ in range(50):
        key = generate_key()
        in_store = _hidden("secretStore", SECRET_STORE_HERE)
        cases = {
            f"{key}: 1\n": _hidden("", "database, email, secretStore, server, userLogin"),
            f"secretStore:\n  {key}: 1\n": in_store,
            f"secretStore:\n  {key.rstrip('=')}: 1\n": in_store,
            f"secretStore:\n  {key[:20]}.{key[20:]}: 1\n": in_store,
            # split across nested mappings: the first part alone is not quoted either
            f"secretStore:\n  {key[:12]}:\n    {key[12:]}: 1\n": in_store,
            f"secretStore:\n  {key[:8]}:\n    {key[8:]}: 1\n": in_store,
        }
        for text, problem in cases.items():
            problems = problems_of(text, tmp_path)
            assert problems == [problem]
            assert not any(part in problems[0] for part in (key[:8], key[12:20], key[-9:]))


def test_a_long_unknown_setting_is_not_quoted_whatever_it_holds(tmp_path: Path) -> None:
    assert problems_of(f"email: {{{'x' * 33}: 1}}\n", tmp_path) == [
        _hidden("email", "fileDir, from, links, smtp, templatesDir, transport")
    ]


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("secretStore", "activeKy"),
        ("secretStore", "active_key"),
        ("secretStore", "RollingKeyFile"),
        ("email", "smtp.hots"),
        ("email", "SMTP"),
        ("email", "port2"),
        ("email", "Zz9"),
        ("email", "templatesDirectory"),
        ("email", "smtpServer"),
    ],
)
def test_an_unknown_setting_that_looks_like_a_name_is_quoted(
    tmp_path: Path, section: str, name: str
) -> None:
    assert problems_of(f"{section}: {{{name}: 1}}\n", tmp_path) == [
        f"{section}.{name}: unknown setting"
    ]


def test_a_key_in_a_yaml_tag_is_not_quoted_with_or_without_its_padding(tmp_path: Path) -> None:
    key = generate_key()
    for tag in (key, key.rstrip("=")):
        with pytest.raises(ConfigError) as raised:
            load_settings(_write(tmp_path, f"secretStore:\n  activeKey: !{tag} x\n"), environ={})
        assert key[:-1] not in raised.value.message and "[key removed]" in raised.value.message


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("values.yaml").write_text("userLogin: {mfa: {digits: 8}}\n")
    other = tmp_path / "other.yaml"
    other.write_text("userLogin: {mfa: {period: 60}}\n")
    assert load_settings(environ={}).user_login.mfa.digits == 8
    assert load_settings(environ={"MFACTL_VALUES": str(other)}).user_login.mfa.period == 60
    monkeypatch.setenv("MFACTL_VALUES", str(other))
    assert load_settings(environ=dict(os.environ)).user_login.mfa.period == 60
    # the environ given is the whole environment: the process's MFACTL_VALUES does not leak in
    assert load_settings(environ={}).user_login.mfa.digits == 8
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml", environ={})


NOT_AN_ADDRESS = (
    'email.from: is not an email address (like "Example Platform <no-reply@example.com>")'
)


@pytest.mark.parametrize(
    "sender",
    ["not an address", "Ops <ops>", "@example.com", "ops@", "Ops <>", "a@example.com, b@x.org"],
)
def test_email_from_must_be_one_address(sender: str, tmp_path: Path) -> None:
    assert problems_of(f"email: {{from: '{sender}'}}\n", tmp_path) == [NOT_AN_ADDRESS]


@pytest.mark.parametrize("sender", ["ops@example.com", '"Doe, Jo" <jo@example.com>'])
def test_email_from_takes_an_address_with_or_without_a_name(
    sender: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"MFACTL_EMAIL_FROM": sender})
    assert settings.email.sender == sender


def test_a_line_break_in_an_environment_value_is_named(tmp_path: Path) -> None:
    environ = {"MFACTL_EMAIL_FROM": "ops@example.com\r\nBcc: all@example.com"}
    assert problems_of("{}\n", tmp_path, environ) == [
        "email.from: must not contain a line break (from MFACTL_EMAIL_FROM)"
    ]


def test_templates_dir_is_relative_to_the_values_file_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    problems = problems_of("email: {templatesDir: values.yaml}\n", folder)
    assert problems == [f"email.templatesDir: {folder / 'values.yaml'} is not a folder"]
    problems = problems_of("email: {templatesDir: mail}\n", folder)
    assert problems == [f"email.templatesDir: folder {folder / 'mail'} does not exist"]
    (folder / "mail").mkdir()
    settings = load_settings(folder / "values.yaml", environ={})
    assert settings.email.templates_dir == str(folder / "mail")


@pytest.mark.parametrize("name", ["activeKeyFile", "rollingKeyFile"])
@pytest.mark.parametrize("content", ["", " \n"])
def test_an_empty_key_file_is_a_problem(name: str, content: str, tmp_path: Path) -> None:
    (tmp_path / "some.key").write_text(content)
    problems = problems_of(f"secretStore: {{{name}: some.key}}\n", tmp_path)
    assert problems == [f"secretStore.{name}: some.key is empty"]


def test_warns_about_an_unknown_mfactl_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {
        "MFACTL_DATABASE_UR": "sqlite:///x.db",
        "MFACTL_COLOUR": "blue",
        "MFACTL_DATABASE_URL": "sqlite:///x.db",
        "MFACTL_ACTOR": "ci",
        "MFACTL_DEBUG": "1",
        "PATH": "/usr/bin",
    }
    assert load_settings(environ=environ).warnings == (
        "MFACTL_COLOUR is not a setting mfactl knows",
        "MFACTL_DATABASE_UR is not a setting mfactl knows (did you mean MFACTL_DATABASE_URL?)",
    )


def test_no_variable_mfactl_reads_is_taken_for_a_typo() -> None:
    root = Path(__file__).parents[2]
    sources = [*root.glob("mfactl/**/*.py"), *root.glob("tests/**/*.py"), *root.glob("bench/*.py")]
    sources += [root / "README.md", root / "values.example.yaml"]
    names = {
        name
        for source in sources
        if source != Path(__file__)  # the typos above
        for name in re.findall(r"\bMFACTL_[A-Z0-9_]*[A-Z0-9]\b", source.read_text("utf-8"))
    }
    assert "MFACTL_ACTOR" in names
    assert names <= {env_name(leaf) for leaf in LEAVES} | set(OTHER_VARIABLES)


def test_relative_mail_paths_are_relative_to_the_values_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "values.yaml"
    path.write_text("email: {fileDir: mail, smtp: {caFile: ca.pem}}\n")
    monkeypatch.chdir(tmp_path)  # not where the values file is
    email = load_settings(path, environ={}).email
    assert email.file_dir == str(tmp_path / "conf" / "mail")
    assert email.smtp.ca_file == str(tmp_path / "conf" / "ca.pem")


# --- what the declarations give ------------------------------------------------------------------

# a string too long for any setting: every check refuses it, as given and as YAML
REFUSED = "a" * 2001


def nested(path: str, value: object) -> dict[str, object]:
    """{"a": {"b": value}} for "a.b"."""
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_every_setting_is_read_from_its_path_in_the_values_file(leaf: str, tmp_path: Path) -> None:
    [problem] = problems_of(json.dumps(nested(leaf, REFUSED)), tmp_path)  # JSON is YAML
    assert problem.startswith(f"{leaf}: must "), problem


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_every_setting_is_read_from_its_environment_variable(leaf: str, tmp_path: Path) -> None:
    name = env_name(leaf)
    assert re.fullmatch(r"MFACTL_[A-Z_]+", name) and name.count("_") == leaf.count(".") + 1
    [problem] = problems_of("{}\n", tmp_path, {name: REFUSED})
    assert problem.startswith(f"{leaf}: must ") and problem.endswith(f" (from {name})"), problem


def test_no_two_settings_share_an_environment_variable() -> None:
    assert len({env_name(leaf) for leaf in LEAVES}) == len(LEAVES)


def test_a_load_without_settings_gives_the_declared_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}) == Settings()
    empty = tmp_path / "values.yaml"
    empty.write_text("{}\n")
    assert load_settings(empty, environ={}) == Settings(source=empty)


# The values.yaml block of the design, less the settings mfactl does not have yet (server,
# recoveryCodes, database pool) and enrollUrl, whose default is resetUrl (below).
DESIGN_VALUES = """
database: {url: "sqlite:///mfactl.db"}
userLogin:
  mfa:
    enabled: true
    mandatory: false
    mandatoryForSysAdmins: false
    issuer: "Example Platform"
    algorithm: SHA1
    digits: 6
    period: 30
    validWindow: 1
    throttle: {baseDelaySeconds: 1, maxDelaySeconds: 900, lockAfterFailures: 100,
               maxFailuresPerDay: 10}
  rememberMe: {enabled: true, days: 30, disabledForSysAdmins: false}
secretStore: {activeKey: "", rollingKey: ""}
email:
  from: "Example Platform <no-reply@example.com>"
  transport: smtp
  templatesDir: null
  smtp: {host: localhost, port: 587, security: starttls, username: "", password: "",
         timeoutSeconds: 10}
  links:
    resetUrl: "https://app.example.com/mfa/setup?org={org}&token={token}"
    ttlHours: 72
"""


def test_the_defaults_are_the_designs(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(DESIGN_VALUES)
    assert load_settings(path, environ={}) == Settings(source=path)
    links = Settings().email.links
    assert links.enroll_url == links.reset_url


# --- rules across settings -----------------------------------------------------------------------


def test_key_ids_of_the_secret_store() -> None:
    active, rolling = generate_key(), generate_key()
    store = SecretStoreSettings(active_key=active, rolling_key=rolling)
    assert (store.active_key_id, store.rolling_key_id) == (key_id(active), key_id(rolling))
    assert (SecretStoreSettings().active_key_id, SecretStoreSettings().rolling_key_id) == (
        None,
        None,
    )


def test_a_key_is_given_inline_or_from_a_file_not_both(tmp_path: Path) -> None:
    (tmp_path / "active.key").write_text(generate_key())
    problems = problems_of(
        f"secretStore: {{activeKey: '{generate_key()}', activeKeyFile: active.key}}\n", tmp_path
    )
    assert problems == [
        "secretStore.activeKeyFile: set either activeKey or activeKeyFile, not both"
    ]


def test_a_missing_key_file_is_named_as_given(tmp_path: Path) -> None:
    [problem] = problems_of("secretStore: {activeKeyFile: gone.key}\n", tmp_path)
    assert problem.startswith("secretStore.activeKeyFile: cannot read gone.key: ")


def test_a_rolling_key_needs_an_active_key(tmp_path: Path) -> None:
    rolling = generate_key()
    problems = problems_of(f"secretStore: {{rollingKey: '{rolling}'}}\n", tmp_path)
    assert problems == ["secretStore.activeKey: must be set when rollingKey is set"]
    # an active key given but wrong is that problem alone, not also a missing one
    problems = problems_of(f"secretStore: {{activeKey: nope, rollingKey: '{rolling}'}}\n", tmp_path)
    assert problems == [
        "secretStore.activeKey: is not a valid Fernet key "
        "(expected 32 url-safe base64-encoded bytes)"
    ]
    environ = {"MFACTL_SECRETSTORE_ACTIVEKEY": "a\nb"}
    assert problems_of(f"secretStore: {{rollingKey: '{rolling}'}}\n", tmp_path, environ) == [
        "secretStore.activeKey: is not a valid Fernet key "
        "(expected 32 url-safe base64-encoded bytes)"
    ]


LESS = "userLogin.mfa.throttle.maxDelaySeconds: must not be less than baseDelaySeconds"


@pytest.mark.parametrize(
    ("throttle", "problems"),
    [
        ("{maxDelaySeconds: 0}", [LESS]),  # against baseDelaySeconds' default
        ("{baseDelaySeconds: 901}", [LESS]),  # against maxDelaySeconds' default
        ("{baseDelaySeconds: 60, maxDelaySeconds: 59}", [LESS]),
        ("{baseDelaySeconds: 60, maxDelaySeconds: 60}", []),
        # a wrong baseDelaySeconds is that problem alone
        (
            "{baseDelaySeconds: 9000, maxDelaySeconds: 60}",
            ["userLogin.mfa.throttle.baseDelaySeconds: must be at most 3600"],
        ),
    ],
)
def test_the_longest_delay_is_not_shorter_than_the_first(
    throttle: str, problems: list[str], tmp_path: Path
) -> None:
    text = f"userLogin: {{mfa: {{throttle: {throttle}}}}}\n"
    if problems:
        assert problems_of(text, tmp_path) == problems
    else:
        (tmp_path / "values.yaml").write_text(text)
        assert load_settings(tmp_path / "values.yaml", environ={}).user_login.mfa.throttle == (
            Throttle(base_delay_seconds=60, max_delay_seconds=60)
        )


@pytest.mark.parametrize(
    ("throttle", "problem"),
    [
        # 0 used to mean "never lock"; NIST SP 800-63B 5.2.2 allows no more than 100
        ("{lockAfterFailures: 0}", "lockAfterFailures: must be at least 1"),
        ("{lockAfterFailures: 101}", "lockAfterFailures: must be at most 100"),
        ("{maxFailuresPerDay: 0}", "maxFailuresPerDay: must be at least 1"),
        ("{maxFailuresPerDay: 1001}", "maxFailuresPerDay: must be at most 1000"),
    ],
)
def test_the_guessing_bound_cannot_be_switched_off(
    throttle: str, problem: str, tmp_path: Path
) -> None:
    text = f"userLogin: {{mfa: {{throttle: {throttle}}}}}\n"
    assert problems_of(text, tmp_path) == [f"userLogin.mfa.throttle.{problem}"]


def test_the_defaults_bound_guessing() -> None:
    assert (Throttle().lock_after_failures, Throttle().max_failures_per_day) == (100, 10)


SETUP = "https://app.example.com/mfa/setup?org={org}&token={token}"
RESET = "https://r.example/?t={token}"
ENROLL = "https://e.example/?t={token}"


@pytest.mark.parametrize(
    ("links", "environ", "reset", "enroll"),
    [
        ("{}", {}, SETUP, SETUP),
        (f"{{resetUrl: '{RESET}'}}", {}, RESET, RESET),
        ("{}", {"MFACTL_EMAIL_LINKS_RESETURL": RESET}, RESET, RESET),
        (f"{{resetUrl: '{RESET}', enrollUrl: '{ENROLL}'}}", {}, RESET, ENROLL),
        (f"{{resetUrl: '{RESET}'}}", {"MFACTL_EMAIL_LINKS_ENROLLURL": ENROLL}, RESET, ENROLL),
        (f"{{enrollUrl: '{ENROLL}'}}", {}, SETUP, ENROLL),
    ],
)
def test_the_enroll_link_is_the_reset_link_unless_given(
    links: str, environ: dict[str, str], reset: str, enroll: str, tmp_path: Path
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(f"email: {{links: {links}}}\n")
    loaded = load_settings(path, environ=environ).email.links
    assert (loaded.reset_url, loaded.enroll_url) == (reset, enroll)
