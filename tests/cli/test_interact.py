"""What the terminal is told when emails wait: the hint fits why they wait."""

from __future__ import annotations

from mfactl.cli.interact import RETRY_HINT, emails_queued


def test_a_mail_server_failure_says_to_retry_once_it_answers() -> None:
    told = emails_queued(2, "connection refused", interrupted=False)
    assert told.exit_code == 9
    assert told.message == "2 emails could not be sent and wait in the outbox: connection refused"
    assert told.hint == RETRY_HINT


def test_an_interrupted_send_says_to_retry_now_and_where_the_one_in_flight_is() -> None:
    told = emails_queued(1, "not sent: interrupted (Ctrl-C)", interrupted=True)
    assert told.message == (
        "1 email could not be sent and waits in the outbox: not sent: interrupted (Ctrl-C)"
    )
    assert told.hint is not None and told.hint.startswith("run `mfactl mail retry` to send them")
    assert "mfactl mail list --status sending" in told.hint
