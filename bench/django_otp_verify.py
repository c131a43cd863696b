"""django-otp's side of bench/verify.py: a device lookup and ``verify_token``, in threads.

Runs in the bench's own environment (Django and django-otp are no dependency of mfactl's):
bench/verify.py makes it (bench/.venv-django) and drives this script over stdin and stdout, one
JSON object a line:

    {"setup": {"engine": "sqlite"|"postgres", "url": URL, "users": N}}  -> {"ready": N}
    {"run": {"threads": T, "seconds": S}}                               -> {"ops", "latencies"}

Each pass gives every user a fresh time step (django-otp's clock is moved by hand, as mfactl's
is), so every verification is a success: the costliest path, as on the mfactl side.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any
from urllib.parse import urlsplit

from passes import passes  # beside this script, which runs as bench/django_otp_verify.py

STEP = 30


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


CLOCK = Clock()


def configure(engine: str, url: str) -> None:
    import django
    from django.conf import settings

    if engine == "sqlite":
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": urlsplit(url).path[1:],
            "OPTIONS": {"timeout": 30},  # mfactl's busy timeout
        }
    else:
        parts = urlsplit(url.replace("+psycopg", ""))
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path[1:],
            "USER": parts.username or "postgres",
            "HOST": parts.hostname,
            "PORT": parts.port or 5432,
            "CONN_MAX_AGE": None,  # one connection per thread, kept: as mfactl's pool
        }
    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_otp",
            "django_otp.plugins.otp_totp",
        ],
        USE_TZ=True,
        OTP_TOTP_SYNC=False,
    )
    django.setup()
    # django-otp reads time.time() in its models module: give it the bench's clock
    from django_otp.plugins.otp_totp import models

    models.time = types.SimpleNamespace(time=CLOCK.time)  # type: ignore[attr-defined]


def setup(engine: str, url: str, users: int) -> list[tuple[str, bytes]]:
    configure(engine, url)
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django_otp.plugins.otp_totp.models import TOTPDevice

    call_command("migrate", verbosity=0, run_syncdb=True)
    names = [f"dj{i}" for i in range(users)]
    User.objects.bulk_create([User(username=n) for n in names])
    by_name = {u.username: u for u in User.objects.filter(username__in=names)}
    devices = [TOTPDevice(user=by_name[n], name="phone", confirmed=True) for n in names]
    TOTPDevice.objects.bulk_create(devices)
    return [(d.user.username, d.bin_key) for d in TOTPDevice.objects.select_related("user")]


def code(key: bytes, at: float) -> str:
    from django_otp.oath import hotp

    return f"{hotp(key, int(at) // STEP):06d}"


def run(users: list[tuple[str, bytes]], threads: int, seconds: float) -> dict[str, Any]:
    """As bench/verify.py's passes: threads that keep their connection, a fresh step a pass."""
    from django.db import connection
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def next_pass() -> list[tuple[Any, ...]]:
        CLOCK.now += STEP
        return [(name, code(key, CLOCK.now)) for name, key in users]

    def verify(name: str, token: str) -> bool:
        device = TOTPDevice.objects.get(user__username=name, confirmed=True)
        return bool(device.verify_token(token))

    def close() -> None:  # this thread's connection (looked up in the thread that ends)
        connection.close()

    _, took, latencies, failed = passes(threads, seconds, next_pass, verify, close)
    return {"latencies": latencies, "failed": failed, "seconds": took}


def main() -> None:
    users: list[tuple[str, bytes]] = []
    for line in sys.stdin:
        request = json.loads(line)
        if "setup" in request:
            users = setup(**request["setup"])
            reply: dict[str, Any] = {"ready": len(users)}
        else:
            reply = run(users, **request["run"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
