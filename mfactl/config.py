"""values.yaml -> one validated, typed Settings object.

Search order: --values, $MFACTL_VALUES, ./values.yaml, /etc/mfactl/values.yaml; none found
means defaults. Every leaf can be overridden from the environment as MFACTL_ + the path in
upper snake case (MFACTL_SECRETSTORE_ACTIVEKEY). Every problem is reported as
``field.path: message``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfactl.errors import ConfigError

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


@dataclass(frozen=True)
class Throttle:
    base_delay_seconds: int = 1
    max_delay_seconds: int = 900
    lock_after_failures: int = 0


@dataclass(frozen=True)
class Mfa:
    enabled: bool = True
    mandatory: bool = False
    mandatory_for_sysadmins: bool = False
    issuer: str = "Example Platform"
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30
    valid_window: int = 1
    throttle: Throttle = field(default_factory=Throttle)


@dataclass(frozen=True)
class RememberMe:
    enabled: bool = True
    days: int = 30
    disabled_for_sysadmins: bool = False


@dataclass(frozen=True)
class UserLogin:
    mfa: Mfa = field(default_factory=Mfa)
    remember_me: RememberMe = field(default_factory=RememberMe)


@dataclass(frozen=True)
class SecretStoreSettings:
    active_key: str = ""
    rolling_key: str = ""


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = ""
    timeout_seconds: float = 10.0
    ca_file: str | None = None  # a PEM bundle to trust instead of the system CAs


@dataclass(frozen=True)
class Links:
    reset_url: str = "https://app.example.com/mfa/setup?org={org}&token={token}"
    enroll_url: str = "https://app.example.com/mfa/setup?org={org}&token={token}"
    ttl_hours: int = 72


@dataclass(frozen=True)
class Email:
    sender: str = "Example Platform <no-reply@example.com>"
    transport: str = "smtp"
    file_dir: str = "mfactl-mail"
    templates_dir: str | None = None
    smtp: Smtp = field(default_factory=Smtp)
    links: Links = field(default_factory=Links)


@dataclass(frozen=True)
class Database:
    url: str = "sqlite:///mfactl.db"


@dataclass(frozen=True)
class Settings:
    database: Database = field(default_factory=Database)
    user_login: UserLogin = field(default_factory=UserLogin)
    secret_store: SecretStoreSettings = field(default_factory=SecretStoreSettings)
    email: Email = field(default_factory=Email)
    source: Path | None = None
    warnings: tuple[str, ...] = ()


# --- the schema: yaml path -> (attribute, validator) ----------------------------------------

Validator = Callable[[Any], Any]


class _Invalid(Exception):
    pass


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid("must be true or false")


def _int(lo: int | None = None, hi: int | None = None) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("must be a whole number")
        if lo is not None and value < lo:
            raise _Invalid(f"must be at least {lo}")
        if hi is not None and value > hi:
            raise _Invalid(f"must be at most {hi}")
        return value

    return check


def _number(lo: float) -> Validator:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid("must be a number")
        if value < lo:
            raise _Invalid(f"must be at least {lo:g}")
        return float(value)

    return check


def _str(*, allow_empty: bool = True, max_len: int = 2000) -> Validator:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid("must be a string")
        if not allow_empty and not value.strip():
            raise _Invalid("must not be empty")
        if len(value) > max_len:
            raise _Invalid(f"must be at most {max_len} characters")
        if "\r" in value or "\n" in value:
            raise _Invalid("must not contain a line break")
        return value

    return check


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(_str()(value))


def _choice(*choices: Any) -> Validator:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            for choice in choices:
                if isinstance(choice, str) and value.lower() == choice.lower():
                    return choice
        elif value in choices and not isinstance(value, bool):
            return value
        shown = " or ".join(str(c) for c in choices)
        raise _Invalid(f"must be {shown}")

    return check


def _mailbox(value: Any) -> str:
    """One RFC 5322 mailbox: ``Name <addr@domain>`` or ``addr@domain``."""
    from email.headerregistry import AddressHeader, HeaderRegistry

    text = str(_str(allow_empty=False, max_len=300)(value))
    try:
        header = HeaderRegistry()("from", text)
    except Exception:  # the stdlib parser raises on some input ("ops@": IndexError)
        header = None
    if (
        not isinstance(header, AddressHeader)
        or header.defects
        or len(header.groups) != 1
        or header.groups[0].display_name is not None
        or len(header.addresses) != 1
        or not (header.addresses[0].username and header.addresses[0].domain)
    ):
        raise _Invalid('is not an email address (like "Example Platform <no-reply@example.com>")')
    return text


def _db_url(value: Any) -> str:
    url = str(_str(allow_empty=False)(value))
    if not re.match(r"^(sqlite|postgresql(\+psycopg)?|mysql\+pymysql|mariadb\+pymysql)://", url):
        raise _Invalid("must start with sqlite://, postgresql+psycopg:// or mysql+pymysql://")
    return url


def _link_template(value: Any) -> str:
    url = str(_str(allow_empty=False)(value))
    if "{token}" not in url:
        raise _Invalid("must contain {token}")
    try:
        url.format(org="o", user="u", token="t")
    except (KeyError, IndexError, ValueError):
        raise _Invalid("may only use the placeholders {org}, {user} and {token}") from None
    if not re.match(r"^https?://", url):
        raise _Invalid("must be an http:// or https:// URL")
    return url


SCHEMA: dict[str, Any] = {
    "database": {"url": _db_url},
    "userLogin": {
        "mfa": {
            "enabled": _bool,
            "mandatory": _bool,
            "mandatoryForSysAdmins": _bool,
            "issuer": _str(allow_empty=False, max_len=100),
            "algorithm": _choice("SHA1", "SHA256", "SHA512"),
            "digits": _choice(6, 8),
            "period": _int(10, 120),  # pyotp refuses longer periods
            "validWindow": _int(0, 10),
            "throttle": {
                "baseDelaySeconds": _int(0, 3600),
                "maxDelaySeconds": _int(0, 86400),
                "lockAfterFailures": _int(0, 1000),
            },
        },
        "rememberMe": {
            "enabled": _bool,
            "days": _int(1, 3650),
            "disabledForSysAdmins": _bool,
        },
    },
    "secretStore": {
        "activeKey": _str(),
        "rollingKey": _str(),
        "activeKeyFile": _optional_str,
        "rollingKeyFile": _optional_str,
    },
    "email": {
        "from": _mailbox,
        "transport": _choice("smtp", "file"),
        "fileDir": _str(allow_empty=False),
        "templatesDir": _optional_str,
        "smtp": {
            "host": _str(allow_empty=False, max_len=255),
            "port": _int(1, 65535),
            "security": _choice("starttls", "tls", "none"),
            "username": _str(),
            "password": _str(),
            "timeoutSeconds": _number(0.1),
            "caFile": _optional_str,
        },
        "links": {
            "resetUrl": _link_template,
            "enrollUrl": _link_template,
            "ttlHours": _int(1, 24 * 365),
        },
    },
}

# yaml key -> dataclass attribute where the snake_case rule does not give it
_ATTR_NAMES = {
    "from": "sender",
    "mandatoryForSysAdmins": "mandatory_for_sysadmins",
    "disabledForSysAdmins": "disabled_for_sysadmins",
}


def _attr(key: str) -> str:
    return _ATTR_NAMES.get(key) or re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _leaves(schema: Mapping[str, Any], prefix: str = "") -> dict[str, Validator]:
    out: dict[str, Validator] = {}
    for key, value in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


LEAVES = _leaves(SCHEMA)


def env_name(path: str) -> str:
    """userLogin.mfa.digits -> MFACTL_USERLOGIN_MFA_DIGITS."""
    return ENV_PREFIX + path.replace(".", "_").upper()


# --- Fernet keys, checked without importing cryptography ---------------------------------------


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a Fernet key, or None when it is one."""
    try:
        raw = base64.urlsafe_b64decode(key.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return "is not a valid Fernet key (expected 32 url-safe base64-encoded bytes)"
    if len(raw) != 32:
        return "is not a valid Fernet key (expected 32 url-safe base64-encoded bytes)"
    return None


def key_id(key: str) -> str:
    """A short, stable fingerprint of a Fernet key: stored beside each ciphertext."""
    raw = base64.urlsafe_b64decode(key.strip().encode("ascii"))
    return hashlib.sha256(b"mfactl-key-id:" + raw).hexdigest()[:12]


# --- loading -------------------------------------------------------------------------------------


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


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read values file {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = _masked(getattr(exc, "problem", None) or "not valid YAML")
        raise ConfigError(f"values file {path} is not valid YAML{where}: {problem}") from None


_FERNET_SHAPED = re.compile(r"[A-Za-z0-9_-]{43}=")


def _masked(text: str) -> str:
    """Messages quote what they found; a key that landed in a mapping key or a YAML tag
    (a slip of the editor) must not be printed with them."""
    return _FERNET_SHAPED.sub("[key removed]", text)


def _flatten(data: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        is_branch = any(leaf.startswith(path + ".") for leaf in LEAVES)
        if path in LEAVES:
            flat[path] = value
        elif is_branch:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                problems.append(f"{path}: must be a mapping")
                continue
            flat.update(_flatten(value, path, problems))
        else:
            problems.append(f"{_masked(path)}: unknown setting")
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


def _check_env(path: str, raw: str) -> Any:
    """Validate an environment value: as the string it is, else read as a YAML scalar."""
    import yaml

    try:
        return LEAVES[path](raw)
    except _Invalid as as_string:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:  # not YAML either: say what is wrong with the string
            raise _Invalid(f"{as_string} (from {env_name(path)})") from None
        try:
            return LEAVES[path](value)
        except _Invalid as exc:
            raise _Invalid(f"{exc} (from {env_name(path)})") from None


def _resolve(path_text: str, base: Path | None) -> Path:
    """A path from the settings (a key file, templatesDir): relative to the values file's folder."""
    path = Path(path_text)
    return base / path if not path.is_absolute() and base is not None else path


def _read_key_file(path_text: str, base: Path | None) -> str:
    return _resolve(path_text, base).read_text(encoding="ascii").strip()


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def load_settings(
    values: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, merge and validate; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    path = find_values_file(values, environ)
    problems: list[str] = []
    warnings = _unknown_variables(environ)
    flat: dict[str, Any] = {}
    data: Any = None
    if path is not None:
        data = _read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"values file {path} must hold a mapping at the top level")
        flat = _flatten(data, "", problems)
    from_file = {leaf for leaf, value in flat.items() if value}
    env = _env_overrides(environ)

    checked: dict[str, Any] = {}
    for leaf_path in {**flat, **env}:
        try:
            if leaf_path in env:
                checked[leaf_path] = _check_env(leaf_path, env[leaf_path])
            else:
                checked[leaf_path] = LEAVES[leaf_path](flat[leaf_path])
        except _Invalid as exc:
            problems.append(f"{leaf_path}: {exc}")

    base = path.parent if path is not None else None
    keys: dict[str, str] = {}
    for name in ("activeKey", "rollingKey"):
        inline = checked.get(f"secretStore.{name}") or ""
        file_ref = checked.get(f"secretStore.{name}File")
        if inline and file_ref:
            problems.append(f"secretStore.{name}File: set either {name} or {name}File, not both")
            continue
        if file_ref:
            try:
                inline = _read_key_file(file_ref, base)
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"secretStore.{name}File: cannot read {file_ref}: {exc}")
                continue
            if not inline:
                problems.append(f"secretStore.{name}File: {file_ref} is empty")
                continue
            key_file = _resolve(file_ref, base)
            if _world_readable(key_file):
                warnings.append(
                    f"{key_file} holds a secret key and is readable by other users; "
                    f"run: chmod 600 {key_file}"
                )
        if inline:
            why = key_problem(inline)
            if why:
                problems.append(f"secretStore.{name}: {why}")
                continue
        keys[name] = inline.strip()
    active, rolling = keys.get("activeKey", ""), keys.get("rollingKey", "")
    if active and rolling and key_id(active) == key_id(rolling):
        problems.append("secretStore.rollingKey: is the same key as secretStore.activeKey")
    if (
        rolling
        and not active
        and "secretStore.activeKey" not in {p.split(":")[0] for p in problems}
    ):
        problems.append("secretStore.activeKey: must be set when rollingKey is set")

    if checked.get("email.templatesDir"):
        folder = _resolve(checked["email.templatesDir"], base)
        if not folder.is_dir():
            problems.append(
                f"email.templatesDir: {folder} is not a folder"
                if folder.exists()
                else f"email.templatesDir: folder {folder} does not exist"
            )
        checked["email.templatesDir"] = str(folder)  # the renderer reads it from any folder
    for leaf in ("email.fileDir", "email.smtp.caFile"):  # relative to the values file, too
        if checked.get(leaf):
            checked[leaf] = str(_resolve(checked[leaf], base))

    throttle_base = checked.get("userLogin.mfa.throttle.baseDelaySeconds", 1)
    throttle_max = checked.get("userLogin.mfa.throttle.maxDelaySeconds", 900)
    if throttle_max < throttle_base:
        problems.append(
            "userLogin.mfa.throttle.maxDelaySeconds: must not be less than baseDelaySeconds"
        )

    if problems:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''} with the settings{where}",
            problems=problems,
        )

    if (
        checked.get("email.transport", "smtp") == "smtp"
        and checked.get("email.smtp.password")
        and checked.get("email.smtp.security", "starttls") == "none"
        and checked.get("email.smtp.host", "localhost") not in ("localhost", "127.0.0.1", "::1")
    ):
        warnings.append(
            "email.smtp.password goes over the network unencrypted with email.smtp.security: "
            "none; use starttls or tls"
        )
    secret_leaves = {"secretStore.activeKey", "secretStore.rollingKey", "email.smtp.password"}
    if path is not None and from_file & secret_leaves and _world_readable(path):
        warnings.append(
            f"{path} holds secret keys and is readable by other users; run: chmod 600 {path}"
        )
    return _build(checked, keys, path, tuple(warnings))


def _build(
    checked: Mapping[str, Any],
    keys: Mapping[str, str],
    path: Path | None,
    warnings: tuple[str, ...],
) -> Settings:
    def section(cls: Any, prefix: str, schema: Mapping[str, Any]) -> Any:
        kwargs: dict[str, Any] = {}
        for key, value in schema.items():
            leaf = f"{prefix}.{key}"
            if isinstance(value, Mapping):
                continue
            if leaf in checked and not key.endswith("KeyFile"):
                kwargs[_attr(key)] = checked[leaf]
        return cls(**kwargs)

    mfa_schema = SCHEMA["userLogin"]["mfa"]
    throttle = section(Throttle, "userLogin.mfa.throttle", mfa_schema["throttle"])
    mfa = section(Mfa, "userLogin.mfa", mfa_schema)
    mfa = Mfa(**{**mfa.__dict__, "throttle": throttle})
    remember = section(RememberMe, "userLogin.rememberMe", SCHEMA["userLogin"]["rememberMe"])
    smtp = section(Smtp, "email.smtp", SCHEMA["email"]["smtp"])
    links = section(Links, "email.links", SCHEMA["email"]["links"])
    if "email.links.enrollUrl" not in checked and "email.links.resetUrl" in checked:
        links = Links(
            reset_url=links.reset_url, enroll_url=links.reset_url, ttl_hours=links.ttl_hours
        )
    email = section(Email, "email", SCHEMA["email"])
    email = Email(**{**email.__dict__, "smtp": smtp, "links": links})
    return Settings(
        database=section(Database, "database", SCHEMA["database"]),
        user_login=UserLogin(mfa=mfa, remember_me=remember),
        secret_store=SecretStoreSettings(
            active_key=keys.get("activeKey", ""), rolling_key=keys.get("rollingKey", "")
        ),
        email=email,
        source=path,
        warnings=warnings,
    )
