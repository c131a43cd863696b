"""The email templates load from an installed wheel (not only from the editable checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RENDER = """
import sys
from mfactl.mail.render import render
import mfactl
from mfactl.web.pages import make_renderer
make_renderer(None, "Example")  # the web pages are in the wheel too
assert mfactl.__file__.startswith(sys.argv[1]), mfactl.__file__
ctx = dict(org="acme", org_name="Acme", user="bob", name="Bob", link="https://x/?t=1",
           expires_at="soon", ttl_hours=72, issuer="Example")
print(render("reset", ctx).subject)
print(render("enroll", ctx).subject)
"""


def test_templates_render_from_the_installed_wheel(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("mfactl-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "-t", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(target)!r})\n" + RENDER,
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Your MFA has been reset for acme", "Set up MFA for acme"]
