"""values.yaml -> one validated, typed Settings object.

Search order: --values, $MFACTL_VALUES, ./values.yaml, /etc/mfactl/values.yaml; none found
means defaults. Every leaf can be overridden from the environment as MFACTL_ + the path in
upper snake case (MFACTL_SECRETSTORE_ACTIVEKEY). Every problem is reported as
``field.path: message``.

Each setting is declared once, as a field of its section: ``setting(yaml_key, default, check)``
(config_types.py); the leaves, their environment names, the unknown-key check and the building
of Settings are all derived from those fields.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from mfactl.config_api_keys import ApiKey, api_keys
from mfactl.config_types import (
    Invalid,
    Section,
    Setting,
    addresses,
    boolean,
    build,
    choice,
    db_url,
    declarations,
    join,
    link_template,
    mailbox,
    number,
    optional_string,
    section,
    setting,
    string,
    whole,
)
from mfactl.errors import ConfigError
from mfactl.file_modes import (
    others_can_write,
    readable_by_others,
    template_refusals,
    writable_refusal,
)
from mfactl.input_files import KEY_FILE_MAX_BYTES, read_capped
from mfactl.keyids import key_id, key_problem  # config.key_id: where callers find it
from mfactl.values_file import HIDDEN, read_yaml

SEARCH_PATHS = (Path("values.yaml"), Path("/etc/mfactl/values.yaml"))
ENV_PREFIX = "MFACTL_"
# MFACTL_ variables that are not settings, so not taken for a mistyped one
OTHER_VARIABLES = (
    "MFACTL_VALUES",  # the values file (find_values_file)
    "MFACTL_ACTOR",  # who acts, for the audit log (bootstrap)
    "MFACTL_DEBUG",  # show the traceback of an unexpected error (cli.common)
    "MFACTL_TEST_POSTGRES_URL",  # the servers of the test suite and the benchmarks
    "MFACTL_TEST_MARIADB_URL",
)


# --- the settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    base_delay_seconds: int = setting("baseDelaySeconds", 1, whole(0, 3600))
    max_delay_seconds: int = setting("maxDelaySeconds", 900, whole(0, 86400))
    # NIST SP 800-63B 5.2.2: at most 100 consecutive failures, whatever the setting
    lock_after_failures: int = setting("lockAfterFailures", 100, whole(1, 100))
    # wrong codes counted per user in any 24 hours, successes in between or not
    max_failures_per_day: int = setting("maxFailuresPerDay", 10, whole(1, 1000))


@dataclass(frozen=True)
class RecoveryCodes:
    # single-use codes made when MFA is confirmed or by `user recovery-codes generate`; 0: off
    count: int = setting("count", 10, whole(0, 50))
    # `policy check`: a user with active MFA and no unused recovery code breaks the policy
    required: bool = setting("required", False, boolean)


@dataclass(frozen=True)
class Mfa:
    enabled: bool = setting("enabled", True, boolean)
    mandatory: bool = setting("mandatory", False, boolean)
    mandatory_for_sysadmins: bool = setting("mandatoryForSysAdmins", False, boolean)
    issuer: str = setting("issuer", "Example Platform", string(allow_empty=False, max_len=100))
    algorithm: str = setting("algorithm", "SHA1", choice("SHA1", "SHA256", "SHA512"))
    digits: int = setting("digits", 6, choice(6, 8))
    period: int = setting("period", 30, whole(10, 120))  # pyotp refuses longer periods
    valid_window: int = setting("validWindow", 1, whole(0, 10))
    throttle: Throttle = section("throttle", Throttle)
    recovery_codes: RecoveryCodes = section("recoveryCodes", RecoveryCodes)


@dataclass(frozen=True)
class RememberMe:
    enabled: bool = setting("enabled", True, boolean)
    days: int = setting("days", 30, whole(1, 3650))
    disabled_for_sysadmins: bool = setting("disabledForSysAdmins", False, boolean)


@dataclass(frozen=True)
class UserLogin:
    mfa: Mfa = section("mfa", Mfa)
    remember_me: RememberMe = section("rememberMe", RememberMe)


@dataclass(frozen=True)
class SecretStoreSettings:
    active_key: str = setting("activeKey", "", string(), secret=True)
    rolling_key: str = setting("rollingKey", "", string(), secret=True)
    # where each key was read from, when from a file (load_settings reads it into the key)
    active_key_file: str | None = setting("activeKeyFile", None, optional_string)
    rolling_key_file: str | None = setting("rollingKeyFile", None, optional_string)

    @property
    def active_key_id(self) -> str | None:
        """The id stored beside what the active key seals; None without an active key."""
        return key_id(self.active_key) if self.active_key else None

    @property
    def rolling_key_id(self) -> str | None:
        return key_id(self.rolling_key) if self.rolling_key else None


@dataclass(frozen=True)
class Smtp:
    host: str = setting("host", "localhost", string(allow_empty=False, max_len=255))
    port: int = setting("port", 587, whole(1, 65535))
    security: str = setting("security", "starttls", choice("starttls", "tls", "none"))
    username: str = setting("username", "", string())
    password: str = setting("password", "", string(), secret=True)
    timeout_seconds: float = setting("timeoutSeconds", 10.0, number(0.1))
    # a PEM bundle to trust instead of the system CAs
    ca_file: str | None = setting("caFile", None, optional_string, relative=True)


_SETUP_URL = "https://app.example.com/mfa/setup?org={org}&token={token}"


@dataclass(frozen=True)
class Links:
    reset_url: str = setting("resetUrl", _SETUP_URL, link_template)
    # given resetUrl alone, load_settings uses it for enrollUrl too
    enroll_url: str = setting("enrollUrl", _SETUP_URL, link_template)
    ttl_hours: int = setting("ttlHours", 72, whole(1, 24 * 365))


@dataclass(frozen=True)
class Email:
    sender: str = setting("from", "Example Platform <no-reply@example.com>", mailbox)
    transport: str = setting("transport", "smtp", choice("smtp", "file"))
    file_dir: str = setting("fileDir", "mfactl-mail", string(allow_empty=False), relative=True)
    templates_dir: str | None = setting("templatesDir", None, optional_string, relative=True)
    smtp: Smtp = section("smtp", Smtp)
    links: Links = section("links", Links)


@dataclass(frozen=True)
class Pool:
    """Pooled connections (PostgreSQL and SQLite files; MariaDB connects per unit of work):
    10 + 10 serve 16 login threads at once, each verification holding one connection."""
    size: int = setting("size", 10, whole(1, 1000))
    max_overflow: int = setting("maxOverflow", 10, whole(0, 1000))
    timeout_seconds: float = setting("timeoutSeconds", 30.0, number(0.1))


@dataclass(frozen=True)
class Database:
    url: str = setting("url", "sqlite:///mfactl.db", db_url)
    pool: Pool = section("pool", Pool)


@dataclass(frozen=True)
class Server:
    """`mfactl serve`; its command-line options override these."""

    host: str = setting("host", "127.0.0.1", string(allow_empty=False, max_len=255))
    port: int = setting("port", 8080, whole(1, 65535))
    send_mail: bool = setting("sendMail", False, boolean)  # deliver the outbox in the background
    # whose X-Forwarded-For and -Proto headers count
    trusted_proxies: tuple[str, ...] = setting("trustedProxies", (), addresses)
    templates_dir: str | None = setting("templatesDir", None, optional_string, relative=True)
    # the HTTP API's keys (none: the API is off)
    api_keys: tuple[ApiKey, ...] = setting("apiKeys", (), api_keys)


@dataclass(frozen=True)
class Settings:
    database: Database = section("database", Database)
    user_login: UserLogin = section("userLogin", UserLogin)
    secret_store: SecretStoreSettings = section("secretStore", SecretStoreSettings)
    email: Email = section("email", Email)
    server: Server = section("server", Server)
    source: Path | None = None  # the values file read, if any
    warnings: tuple[str, ...] = ()


# --- what the declarations give -------------------------------------------------------------------


LEAVES: dict[str, Setting] = {p: s for p, s in declarations(Settings) if isinstance(s, Setting)}
_SECTIONS = frozenset(p for p, s in declarations(Settings) if isinstance(s, Section))


def env_name(path: str) -> str:
    """userLogin.mfa.digits -> MFACTL_USERLOGIN_MFA_DIGITS."""
    return ENV_PREFIX + path.replace(".", "_").upper()


# --- loading -------------------------------------------------------------------------------------


@dataclass
class _Problems:
    """Every problem found, and the paths they are about (a rule skips a path already wrong)."""

    messages: list[str] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)

    def add(self, path: str, message: str) -> None:
        self.messages.append(f"{path}: {message}")
        self.paths.add(path)


def find_values_file(
    explicit: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """The values file the search order picks, or None for pure defaults."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"values file {path} does not exist or is not a file")
        return path
    env = (os.environ if environ is None else environ).get("MFACTL_VALUES")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"MFACTL_VALUES points to {path}, which does not exist")
        return path
    for candidate in SEARCH_PATHS:
        if candidate.is_file():
            return candidate
    return None


_SHORTEST_HIDDEN = 8  # a shorter name holds too little of a key to matter, and is shown
_LONGEST_NAME = 32  # the longest setting path below a section is 31 characters


def _known_below(prefix: str) -> list[str]:
    """The settings and sections under prefix, as paths relative to it."""
    start = f"{prefix}." if prefix else ""
    return sorted(p.removeprefix(start) for p in (*LEAVES, *_SECTIONS) if p.startswith(start))


def _quotable(name: str, known: list[str]) -> bool:
    """Whether an unknown setting name may be repeated in a message: when it is short, or close
    to a setting that exists there, as a typo is. A key pasted as a mapping key (whole, without
    its "=", split at a "." or across nested mappings) is long and close to nothing, so it is
    never repeated, whatever letters it happens to hold."""
    if len(name) < _SHORTEST_HIDDEN:
        return True
    if len(name) > _LONGEST_NAME:
        return False
    return bool(difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1))


def _hidden_problem(prefix: str, known: list[str]) -> tuple[str, str]:
    here = ", ".join(k for k in known if "." not in k)
    message = f"unknown setting (its name may be a key: not shown; known here: {here})"
    return join(prefix, HIDDEN), message


def _flatten(data: Mapping[object, object], prefix: str, problems: _Problems) -> dict[str, object]:
    flat: dict[str, object] = {}
    known = _known_below(prefix)
    for key, value in data.items():
        name = str(key)
        path = join(prefix, name)
        if not _quotable(name, known):
            problems.add(*_hidden_problem(prefix, known))
        elif path in LEAVES:
            flat[path] = value
        elif path in _SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                problems.add(path, "must be a mapping")
                continue
            flat.update(_flatten(value, path, problems))
        else:
            problems.add(path, "unknown setting")
    return flat


def _env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    return {path: environ[env_name(path)] for path in LEAVES if env_name(path) in environ}


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each MFACTL_ variable that is no setting's: a typo is otherwise ignored."""
    known = [*(env_name(leaf) for leaf in LEAVES), *OTHER_VARIABLES]
    stems = [name.removeprefix(ENV_PREFIX) for name in known]  # the shared prefix is no likeness
    warnings = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), stems, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            warnings.append(f"{name} is not a setting mfactl knows{hint}")
    return warnings


def _check_env(path: str, raw: str) -> object:
    """Validate an environment value: as the string it is, else read as a YAML scalar."""
    import yaml

    check = LEAVES[path].check
    try:
        return check(raw)
    except Invalid as as_string:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:  # not YAML either: say what is wrong with the string
            raise Invalid(f"{as_string} (from {env_name(path)})") from None
        try:
            return check(value)
        except Invalid as exc:
            source = f"(from {env_name(path)})"
            within = tuple((where, f"{message} {source}") for where, message in exc.within)
            raise Invalid(f"{exc} {source}", within=within) from None


def _resolve(path_text: str, base: Path | None) -> Path:
    """A path from the settings (a key file, templatesDir): relative to the values file's folder."""
    path = Path(path_text)
    return base / path if not path.is_absolute() and base is not None else path


def load_settings(
    values: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, merge and validate; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    path = find_values_file(values, environ)
    problems = _Problems()
    warnings = _unknown_variables(environ)
    flat: dict[str, object] = {}
    if path is not None:
        if others_can_write(path):
            raise ConfigError(f"values file {writable_refusal(path)}")
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"values file {path} must hold a mapping at the top level")
        flat = _flatten(data, "", problems)
    env = _env_overrides(environ)

    checked: dict[str, object] = {}
    for leaf in {**flat, **env}:
        try:
            checked[leaf] = (
                _check_env(leaf, env[leaf]) if leaf in env else LEAVES[leaf].check(flat[leaf])
            )
        except Invalid as exc:
            for where, message in exc.within or (("", str(exc)),):
                problems.add(leaf + where, message)
    base = path.parent if path is not None else None
    for leaf, value in checked.items():  # the renderer and transports read them from any folder
        if LEAVES[leaf].relative and isinstance(value, str):
            checked[leaf] = str(_resolve(value, base))
    # every setting checked, or at its default when not given (or given wrong)
    settings = build(Settings, "", checked)

    secret_store = _read_keys(settings.secret_store, base, problems, warnings)
    for leaf, templates_dir in (
        ("email.templatesDir", settings.email.templates_dir),
        ("server.templatesDir", settings.server.templates_dir),
    ):
        if templates_dir and not Path(templates_dir).is_dir():
            problems.add(
                leaf,
                f"{templates_dir} is not a folder"
                if Path(templates_dir).exists()
                else f"folder {templates_dir} does not exist",
            )
        elif templates_dir:
            for refusal in template_refusals(Path(templates_dir)):
                problems.add(leaf, refusal)
    throttle = settings.user_login.mfa.throttle
    if throttle.max_delay_seconds < throttle.base_delay_seconds:
        problems.add(
            "userLogin.mfa.throttle.maxDelaySeconds", "must not be less than baseDelaySeconds"
        )
    recovery = settings.user_login.mfa.recovery_codes
    if recovery.required and recovery.count == 0:
        problems.add(
            "userLogin.mfa.recoveryCodes.required",
            "cannot be true while recoveryCodes.count is 0 (no codes are made)",
        )

    if problems.messages:
        count = len(problems.messages)
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"{count} problem{'s' if count > 1 else ''} with the settings{where}",
            problems=problems.messages,
        )

    smtp = settings.email.smtp
    if (
        settings.email.transport == "smtp"
        and smtp.password
        and smtp.security == "none"
        and smtp.host not in ("localhost", "127.0.0.1", "::1")
    ):
        warnings.append(
            "email.smtp.password goes over the network unencrypted with email.smtp.security: "
            "none; use starttls or tls"
        )
    secret_in_file = any(value and LEAVES[leaf].secret for leaf, value in flat.items())
    if path is not None and secret_in_file and readable_by_others(path):
        warnings.append(
            f"{path} holds secret keys and is readable by other users; run: chmod 600 {path}"
        )
    links = settings.email.links
    if "email.links.resetUrl" in checked and "email.links.enrollUrl" not in checked:
        links = replace(links, enroll_url=links.reset_url)
    return replace(
        settings,
        secret_store=secret_store,
        email=replace(settings.email, links=links),
        source=path,
        warnings=tuple(warnings),
    )


def _read_keys(
    given: SecretStoreSettings, base: Path | None, problems: _Problems, warnings: list[str]
) -> SecretStoreSettings:
    """The keys, each given inline or read from its file, checked alone and as a pair."""
    active, active_file = _read_key(
        "activeKey", given.active_key, given.active_key_file, base, problems, warnings
    )
    rolling, rolling_file = _read_key(
        "rollingKey", given.rolling_key, given.rolling_key_file, base, problems, warnings
    )
    if active and rolling and key_id(active) == key_id(rolling):
        problems.add("secretStore.rollingKey", "is the same key as secretStore.activeKey")
    active_paths = {"secretStore.activeKey", "secretStore.activeKeyFile"}
    if rolling and not active and not active_paths & problems.paths:  # else said already
        problems.add("secretStore.activeKey", "must be set when rollingKey is set")
    return SecretStoreSettings(active, rolling, active_file, rolling_file)


def _read_key(
    name: str,
    inline: str,
    file_ref: str | None,
    base: Path | None,
    problems: _Problems,
    warnings: list[str],
) -> tuple[str, str | None]:
    """(the key, the file it was read from); ("", None) after a problem."""
    if inline and file_ref:
        problems.add(f"secretStore.{name}File", f"set either {name} or {name}File, not both")
        return "", None
    key_file = _resolve(file_ref, base) if file_ref else None
    if key_file is not None:
        if others_can_write(key_file):
            problems.add(f"secretStore.{name}File", writable_refusal(key_file))
            return "", None
        try:
            inline = read_capped(key_file, KEY_FILE_MAX_BYTES).decode("ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            problems.add(f"secretStore.{name}File", f"cannot read {file_ref}: {reason}")
            return "", None
        if not inline:
            problems.add(f"secretStore.{name}File", f"{file_ref} is empty")
            return "", None
        if readable_by_others(key_file):
            warnings.append(
                f"{key_file} holds a secret key and is readable by other users; "
                f"run: chmod 600 {key_file}"
            )
    if inline:
        why = key_problem(inline)
        if why:
            problems.add(f"secretStore.{name}", why)
            return "", None
    return inline.strip(), str(key_file) if key_file is not None else None
