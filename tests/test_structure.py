"""The house reads one way: `cli | web | api -> services -> (db, crypto, totp, mail, config)`,
with `app.py` and `errors.py` at the bottom. Read from the imports (lazy ones included), so a
shortcut through the layers fails here instead of being found by a reader later."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mfactl"
EDGES = ("mfactl.bootstrap", "mfactl.cli", "mfactl.api", "mfactl.web")
# the command line's and the web's own libraries: the services know neither
EDGE_LIBRARIES = ("typer", "click", "rich", "starlette", "uvicorn")
BELOW_THE_SERVICES = ("mfactl.db", "mfactl.crypto", "mfactl.mail", "mfactl.totp")
LEAVES = (
    "crypto",
    "totp",
    "config",
    "config_types",
    "config_api_keys",
    "errors",
    "app",
    "keyids",
    "file_modes",
    "templating",
    "input_files",
    "values_file",
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[dotted.removesuffix(".__init__")] = path
    return found


def imports(path: Path, text: str | None = None) -> set[str]:
    """Every module the file imports, at its top or inside a function; a relative import
    (``from ..bootstrap import bootstrap``) by the absolute name it stands for."""
    # the package a relative import starts from: the folder (of a module, or of an __init__)
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])
    names: set[str] = set()
    source = path.read_text(encoding="utf-8") if text is None else text
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def reaches(names: set[str], targets: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == t or n.startswith(t + ".") for t in targets))


def below_the_edges() -> list[str]:
    return [
        name
        for name in modules()
        if name.startswith(("mfactl.services", "mfactl.mail", "mfactl.db"))
        or name in {f"mfactl.{leaf}" for leaf in LEAVES}
    ]


def test_relative_imports_are_read_by_the_names_they_stand_for() -> None:
    """A relative import is no way around the rules below."""
    module = PACKAGE / "services" / "keys" / "inventory.py"
    text = "from .. import outbox\nfrom . import _tables\nfrom ...cli import app\n"
    names = imports(module, text)
    assert {"mfactl.services.outbox", "mfactl.services.keys._tables", "mfactl.cli.app"} <= names


@pytest.mark.parametrize("name", below_the_edges())
def test_nothing_below_the_edges_imports_the_bootstrap_the_cli_the_api_or_the_web(
    name: str,
) -> None:
    assert reaches(imports(modules()[name]), EDGES + EDGE_LIBRARIES) == []


@pytest.mark.parametrize(
    "name", [n for n in modules() if n.startswith(("mfactl.cli", "mfactl.web"))]
)
def test_commands_and_pages_reach_the_database_crypto_mail_and_totp_only_through_services(
    name: str,
) -> None:
    names = imports(modules()[name])
    assert reaches(names, BELOW_THE_SERVICES) == []
    assert reaches(names, ("sqlalchemy", "pyotp", "cryptography")) == []


def test_the_bootstrap_is_used_only_by_the_edges() -> None:
    users = [n for n, path in modules().items() if "mfactl.bootstrap" in imports(path)]
    assert all(n.startswith(EDGES) for n in users), users


def test_the_app_imports_nothing_of_mfactl_when_it_is_imported() -> None:
    """Its resources are built on first use: at import time it needs the standard library only."""
    tree = ast.parse((PACKAGE / "app.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(n) for n in top if "mfactl" in ast.unparse(n)] == []


def test_every_top_level_module_has_its_place() -> None:
    """A new module at the top is an edge or a leaf, and the tests above hold it to that."""
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top - set(LEAVES) == {"api", "bootstrap"}


def test_no_module_is_over_500_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: count for n, count in long.items() if count > 500} == {}
