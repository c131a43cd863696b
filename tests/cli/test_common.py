from __future__ import annotations

import pytest

from mfactl.cli import common


def test_tables_keep_addresses_whole_and_wrap_free_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setattr(common, "_consoles", {})
    common.print_table(
        ["recipient", "subject"],
        [("someone.with.a.long.name@example.com", "Your MFA has been reset for acme, " * 3)],
        wrap=("subject",),
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RECIPIENT", "SUBJECT"]
    assert "someone.with.a.long.name@example.com" in lines[1]
    assert len(lines) > 2  # the subject wrapped instead
    assert all(len(line) <= 60 for line in lines)
