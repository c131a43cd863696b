"""The wheel carries the migrations and the email templates (a non-editable install works)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_templates_and_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("mfactl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mfactl/db/migrations/env.py" in names
    assert "mfactl/db/migrations/versions/0001_initial_schema.py" in names
    assert "mfactl/db/migrations/script.py.mako" in names
    templates = {n for n in names if n.startswith("mfactl/templates/email/")}
    on_disk = {
        f"mfactl/templates/email/{p.name}"
        for p in (ROOT / "templates/email").glob("*")
        if p.is_file()
    }
    assert on_disk <= templates
    assert any(n.startswith("mfactl-") and n.endswith("entry_points.txt") for n in names)
    # every module, subpackages included (a package left out of pyproject.toml is not shipped)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mfactl").rglob("*.py")}
    assert modules - names == set()
