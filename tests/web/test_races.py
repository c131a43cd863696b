"""Two browsers opening one link at the same moment: one holds it, the other is refused."""

from __future__ import annotations

import pytest

from mfactl.app import App
from mfactl.errors import Conflict
from mfactl.services import links, setup_flow
from tests.integration.test_user_races import arriving_at_the_lock, pausing, race
from tests.unit.helpers import people
from tests.web.conftest import new_link, with_links


def test_of_two_browsers_opening_at_once_one_holds_the_link(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = with_links(app)
    people(web, "bob")
    token = new_link(web).rsplit("token=", 1)[1]
    first, second = setup_flow.new_browser_secret(), setup_flow.new_browser_secret()
    # the first opening pauses right after reading the link under bob's lock
    # and the second arrives at bob's lock, which the first holds
    paused = arriving_at_the_lock(pausing(links, "checked_link", monkeypatch), monkeypatch)
    one, two = race(
        lambda: setup_flow.open_for_browser(web, "acme", token, first, "192.0.2.1"),
        lambda: setup_flow.open_for_browser(web, "acme", token, second, "192.0.2.2"),
        paused,
    )
    monkeypatch.undo()
    assert one is None
    assert isinstance(two, Conflict) and "another browser" in two.message
    assert isinstance(setup_flow.step_for_browser(web, first), setup_flow.StepPage)
