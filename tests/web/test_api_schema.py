"""Schemathesis against /api/v1/openapi.json: generated requests (bounded) on a real database,
SQLite and PostgreSQL, find no 5xx and no answer the document does not describe."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.meta import TestPhase
from schemathesis.generation.modes import GenerationMode

from mfactl.app import App
from mfactl.config import Server
from mfactl.services import api_keys
from mfactl.web import api
from mfactl.web.server import asgi
from tests.conftest import FrozenClock, make_app
from tests.unit.helpers import enrolled, people
from tests.web.conftest import with_links

KEY = api_keys.create("schemathesis", [])
LIMITED = api_keys.create("limited", ["acme"])


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, clock: FrozenClock, active_key: str) -> Iterator[Any]:
    """The ASGI app on a database holding acme/alice (enrolled) and bob, the examples' users."""
    url = request.getfixturevalue(f"{request.param}_url")
    if request.param != "sqlite":
        from mfactl.db.engine import make_engine, upgrade_schema
        from tests.conftest import _wipe

        engine = make_engine(url)
        upgrade_schema(engine)
        engine.dispose()
    app: App = with_links(make_app(url, clock, active_key))
    if request.param != "sqlite":
        _wipe(app)
    people(app, "alice", "bob")
    enrolled(app, "alice")
    yield asgi(app, Server(api_keys=(KEY.entry, LIMITED.entry)))
    app.close()


EXAMPLES = 40  # per operation and mode: 10 operations x 2 modes x 2 databases, about 45 s


def test_the_api_keeps_to_its_openapi_document(served: Any) -> None:
    """Schema-valid bodies (and the document's examples) and invalid ones, for every operation:
    no 5xx, and every answer has a status, a content type and a shape the document gives."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", served)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(api.ENDPOINTS) == 10
    headers = {"Authorization": f"Bearer {KEY.key}"}
    statuses: Counter[int] = Counter()
    runs = [(GenerationMode.POSITIVE, TestPhase.EXAMPLES)] + [
        (mode, TestPhase.FUZZING) for mode in GenerationMode
    ]
    for operation in operations:
        for mode, phase in runs:

            @given(case=operation.as_strategy(generation_mode=mode, phase=phase))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: Any) -> None:
                statuses[case.call_and_validate(headers=headers).status_code] += 1

            check()
    # the examples reached the library: real outcomes, not only refusals of the body
    assert statuses[200] and statuses[400] and statuses[404], statuses
