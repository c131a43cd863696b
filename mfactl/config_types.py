"""How a setting is declared (``setting``, ``section``), checked, and walked by config.py.

A section is a frozen dataclass; each field is either ``setting(yaml_key, default, check)`` or
``section(yaml_key, cls)``. ``declared`` lists them by YAML path and ``build`` makes a section
from checked values, so config.py derives its leaves, environment names and Settings from the
fields alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")
Check = Callable[[object], T]  # a raw YAML (or environment) value -> the field's value


# --- how a field declares its setting -----------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One leaf: its YAML key and the check that turns what was given into the field's value."""

    key: str
    check: Check[object]
    secret: bool = False  # a values file that gives it must not be readable by others
    relative: bool = False  # a path: relative to the values file's folder when given there


@dataclass(frozen=True)
class Section:
    """A mapping of settings, held by a field whose type is another section dataclass."""

    key: str
    cls: type[DataclassInstance]


DECLARED = "mfactl.config"  # the field metadata key for a Setting or a Section


def setting(
    key: str, default: T, check: Check[T], *, secret: bool = False, relative: bool = False
) -> T:
    """A field holding one setting. A list-valued setting holds a tuple (sections are frozen):
    its check takes the list and returns the tuple."""
    return field(default=default, metadata={DECLARED: Setting(key, check, secret, relative)})


def section(key: str, cls: type[D]) -> D:
    """A field holding a section: every setting in it at its defaults unless given."""
    return field(default_factory=cls, metadata={DECLARED: Section(key, cls)})


# --- checks: each returns the value to keep, or raises Invalid saying what is wrong -----------


class Invalid(Exception):
    """A value a check refuses; the message says why, after the path.

    A check of a list of mappings names each problem's place in it instead: ``within`` holds
    (``[0].hash``, message) pairs, reported as ``server.apiKeys[0].hash: message``.
    """

    def __init__(self, message: str, *, within: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.within = within


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid("must be true or false")


def whole(lo: int | None = None, hi: int | None = None) -> Check[int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("must be a whole number")
        if lo is not None and value < lo:
            raise Invalid(f"must be at least {lo}")
        if hi is not None and value > hi:
            raise Invalid(f"must be at most {hi}")
        return value

    return check


def number(lo: float) -> Check[float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid("must be a number")
        if value < lo:
            raise Invalid(f"must be at least {lo:g}")
        return float(value)

    return check


def string(*, allow_empty: bool = True, max_len: int = 2000) -> Check[str]:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise Invalid("must be a string")
        if not allow_empty and not value.strip():
            raise Invalid("must not be empty")
        if len(value) > max_len:
            raise Invalid(f"must be at most {max_len} characters")
        if "\r" in value or "\n" in value:
            raise Invalid("must not contain a line break")
        return value

    return check


def optional_string(value: object) -> str | None:
    if value is None or value == "":
        return None
    return string()(value)


def choice(*choices: T) -> Check[T]:
    def check(value: object) -> T:
        for choice in choices:
            if isinstance(value, str) and isinstance(choice, str):
                if value.lower() == choice.lower():
                    return choice
            elif not isinstance(value, str | bool) and value == choice:
                return choice
        raise Invalid("must be " + " or ".join(str(c) for c in choices))

    return check


def mailbox(value: object) -> str:
    """One RFC 5322 mailbox: ``Name <addr@domain>`` or ``addr@domain``."""
    from email.headerregistry import AddressHeader, HeaderRegistry

    text = string(allow_empty=False, max_len=300)(value)
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
        raise Invalid('is not an email address (like "Example Platform <no-reply@example.com>")')
    return text


def db_url(value: object) -> str:
    url = string(allow_empty=False)(value)
    if not re.match(r"^(sqlite|postgresql(\+psycopg)?|mysql\+pymysql|mariadb\+pymysql)://", url):
        raise Invalid("must start with sqlite://, postgresql+psycopg:// or mysql+pymysql://")
    return url


def link_template(value: object) -> str:
    url = string(allow_empty=False)(value)
    if "{token}" not in url:
        raise Invalid("must contain {token}")
    try:
        url.format(org="o", user="u", token="t")
    except (KeyError, IndexError, ValueError):
        raise Invalid("may only use the placeholders {org}, {user} and {token}") from None
    if not re.match(r"^https?://", url):
        raise Invalid("must be an http:// or https:// URL")
    return url


def addresses(value: object) -> tuple[str, ...]:
    """A list of IP addresses or networks (or "*" for any), also given as "a, b" in one string."""
    import ipaddress

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise Invalid("must be a list of IP addresses or networks")
    found: list[str] = []
    for item in items:
        text = item.strip() if isinstance(item, str) else ""
        if text == "*":
            found.append(text)
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise Invalid(
                f"must be IP addresses or networks ({str(item)[:60]!r} is not one)"
            ) from None
        found.append(text)
    return tuple(found)


# --- walking the declarations -------------------------------------------------------------------


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def declarations(
    cls: type[DataclassInstance], prefix: str = ""
) -> Iterator[tuple[str, Setting | Section]]:
    """(YAML path, declaration) for each setting and section under cls, a section first."""
    for item in fields(cls):
        spec = item.metadata.get(DECLARED)
        if isinstance(spec, Section):
            yield join(prefix, spec.key), spec
            yield from declarations(spec.cls, join(prefix, spec.key))
        elif isinstance(spec, Setting):
            yield join(prefix, spec.key), spec


def build(cls: type[D], prefix: str, values: Mapping[str, object]) -> D:
    """cls with each setting that values holds (by YAML path); the others keep their defaults."""
    given: dict[str, object] = {}
    for item in fields(cls):
        spec = item.metadata.get(DECLARED)
        if isinstance(spec, Section):
            given[item.name] = build(spec.cls, join(prefix, spec.key), values)
        elif isinstance(spec, Setting) and join(prefix, spec.key) in values:
            given[item.name] = values[join(prefix, spec.key)]
    return cls(**given)
