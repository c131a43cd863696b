"""server.apiKeys: the HTTP API's keys as values.yaml gives them, checked field by field.

A check of config_types' kind, for a list of mappings: each problem is named by its place in the
list (``server.apiKeys[0].hash: ...``); config.py declares the setting with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mfactl.config_types import Invalid


@dataclass(frozen=True)
class ApiKey:
    """A key of the HTTP API (`mfactl api-key create` prints the entry): who it is in the audit
    log, the organizations it may act on ("*": all), and the SHA-256 of the key itself."""

    name: str
    orgs: tuple[str, ...]
    hash: str

    def may_act_on(self, org: str) -> bool:
        """The organization as a request names it (any case, spaces around), as lookups read it."""
        return "*" in self.orgs or org.strip().lower() in self.orgs


API_KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_ORG_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _api_key_problems(entry: object) -> tuple[ApiKey | None, list[tuple[str, str]]]:
    """One entry of server.apiKeys checked: the key, or what is wrong, field by field."""
    if not isinstance(entry, Mapping):
        return None, [("", "must be a mapping with name, orgs and hash")]
    found: list[tuple[str, str]] = []
    unknown = sorted(str(k) for k in entry if k not in ("name", "orgs", "hash"))
    # an unknown field's name is not repeated: it could be a key pasted in the wrong place
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        found.append(("", f"unknown field{plural} (known: name, orgs, hash)"))
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        found.append((".name", "must be a non-empty string (the audit actor)"))
    elif len(name) > 200 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        found.append((".name", "must be one line of at most 200 characters"))
    orgs = entry.get("orgs")
    if not isinstance(orgs, list) or not orgs:
        found.append((".orgs", 'must be a non-empty list of organization slugs, or ["*"]'))
        orgs = []
    for i, org in enumerate(orgs):
        if not isinstance(org, str) or not (org == "*" or _ORG_SLUG.fullmatch(org)):
            found.append((f".orgs[{i}]", 'must be an organization slug or "*"'))
    digest = entry.get("hash")
    if not isinstance(digest, str) or not API_KEY_HASH.fullmatch(digest):
        # never quoted: a key given where its hash belongs must not reach a message
        found.append((".hash", 'must be "sha256:" and 64 hex digits (`mfactl api-key create`)'))
    if found:
        return None, found
    assert isinstance(name, str) and isinstance(digest, str)
    return ApiKey(name.strip(), tuple(orgs), digest), []


def api_keys(value: object) -> tuple[ApiKey, ...]:
    """server.apiKeys: a list of {name, orgs, hash}, every problem named by its place."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise Invalid("must be a list of {name, orgs, hash} (from `mfactl api-key create`)")
    keys: list[ApiKey] = []
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(value):
        if isinstance(entry, ApiKey):  # already checked (a Server built in code)
            keys.append(entry)
            continue
        key, found = _api_key_problems(entry)
        problems += [(f"[{i}]{where}", message) for where, message in found]
        if key is not None:
            keys.append(key)
    names = [k.name for k in keys]
    problems += [
        (f"[{i}].name", "is the name of an earlier key (each key is its own audit actor)")
        for i, name in enumerate(names)
        if name in names[:i]
    ]
    hashes = [k.hash for k in keys]
    problems += [
        (f"[{i}].hash", "is the hash of an earlier key")
        for i, digest in enumerate(hashes)
        if digest in hashes[:i]
    ]
    if problems:
        raise Invalid(problems[0][1], within=tuple(problems))
    return tuple(keys)
