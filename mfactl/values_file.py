"""Reading values.yaml: bounded in size and depth, its YAML errors told without a key in them."""

from __future__ import annotations

import re
from pathlib import Path

from mfactl.errors import ConfigError
from mfactl.input_files import VALUES_MAX_BYTES, read_capped

# A run this long of the url-safe base64 alphabet is (most of) a Fernet key, "=" or not.
_FERNET_SHAPED = re.compile(r"[A-Za-z0-9_-]{32,}=*")
HIDDEN = "[key removed]"


def masked(text: str) -> str:
    """Messages quote what they found; a key that landed in a YAML tag (a slip of the editor)
    must not be printed with them."""
    return _FERNET_SHAPED.sub(HIDDEN, text)


def read_yaml(path: Path) -> object:
    import yaml

    try:
        text = read_capped(path, VALUES_MAX_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read values file {path}: {reason}") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:  # PyYAML composes nested collections by recursion
        raise ConfigError(f"values file {path} nests its settings too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = masked(getattr(exc, "problem", None) or "not valid YAML")
        raise ConfigError(f"values file {path} is not valid YAML{where}: {problem}") from None
