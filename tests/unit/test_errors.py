"""errors.py is the one home of mfactl's errors, each with one line of docstring."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import mfactl
from mfactl import errors

PACKAGE = Path(mfactl.__file__).parent
ERRORS = {
    name: cls
    for name, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.MfactlError) and cls.__module__ == errors.__name__
}


def _base_name(base: ast.expr) -> str | None:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


def test_no_error_class_lives_outside_errors_py() -> None:
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                _base_name(base) in ERRORS for base in node.bases
            ):
                elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert elsewhere == []


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_each_error_has_a_one_line_docstring(name: str) -> None:
    doc = ERRORS[name].__dict__.get("__doc__")
    assert doc and doc.strip() and "\n" not in doc.strip()
