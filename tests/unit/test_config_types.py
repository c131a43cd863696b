"""The declaration kit: a section of settings, a list-valued one among them, walked and built."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mfactl.config_types import (
    Invalid,
    Section,
    Setting,
    build,
    choice,
    declarations,
    section,
    setting,
    string,
    whole,
)


def hosts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid("must be a list")
    return tuple(string(allow_empty=False)(item) for item in value)


@dataclass(frozen=True)
class Proxy:
    port: int = setting("port", 8080, whole(1, 65535))
    trusted: tuple[str, ...] = setting("trustedProxies", (), hosts)


@dataclass(frozen=True)
class Root:
    name: str = setting("name", "mfactl", string())
    server: Proxy = section("server", Proxy)


def test_declarations_name_every_setting_and_section_by_its_yaml_path() -> None:
    found = [(path, type(declared)) for path, declared in declarations(Root)]
    assert found == [
        ("name", Setting),
        ("server", Section),
        ("server.port", Setting),
        ("server.trustedProxies", Setting),
    ]
    checks = {path: declared for path, declared in declarations(Root)}
    trusted = checks["server.trustedProxies"]
    assert isinstance(trusted, Setting) and trusted.check(["10.0.0.1"]) == ("10.0.0.1",)


def test_build_takes_what_is_given_and_keeps_the_other_defaults() -> None:
    assert build(Root, "", {}) == Root()
    built = build(Root, "", {"server.trustedProxies": ("10.0.0.1",), "name": "x"})
    assert built == Root(name="x", server=Proxy(trusted=("10.0.0.1",)))
    assert build(Proxy, "server", {"server.port": 9000}) == Proxy(port=9000)


def test_choice_gives_the_declared_choice() -> None:
    assert choice("SHA1", "SHA256")("sha256") == "SHA256"
    digits = choice(6, 8)(8.0)
    assert digits == 8 and type(digits) is int
    for wrong in (True, "6", 7):
        with pytest.raises(Invalid, match=r"^must be 6 or 8$"):
            choice(6, 8)(wrong)
