"""How many code verifications per second the service sustains, against the raw in-process limit.

    .venv/bin/python bench/verify.py [--seconds 8] [--users 200] [--engines sqlite,postgres]

The raw limit is what one verification cannot avoid, measured in the same run: open the sealed
secret (Fernet decrypt, uid check) and compare the code with the window's codes (pyotp), in a
loop with no database. The service does that plus its database work: find the org and the user,
read the secret row, accept the code with one conditional UPDATE, commit. One thread, every
verification a success (a fresh time step for each pass over the users): the costliest path.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import BenchClock, database, make_app
from mfactl import totp
from mfactl.crypto import SecretStore, generate_key
from mfactl.services import orgs, user_import, verification

UID = "00000000-0000-0000-0000-000000000000"


def raw_per_second(seconds: float, window: int) -> float:
    """Fernet decrypt + the window's codes compared in constant time, in a tight loop."""
    store = SecretStore(generate_key())
    secret = totp.new_secret()
    ciphertext = store.seal_secret(UID, secret).ciphertext
    params = totp.TotpParams()
    moment = 1_800_000_000
    code = totp.code_at(secret, moment, params)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            opened = store.open_secret(UID, ciphertext, "bench")
            assert totp.match(opened.plaintext, code, moment, params, window).step is not None
        done += 200
    return done / (time.perf_counter() - start)


def service_per_second(engine: str, seconds: float, user_count: int) -> tuple[float, int, int]:
    """(verifications per second, how many, how many were not ok) on one engine."""
    clock = BenchClock()
    with database(engine) as url:
        app = make_app(url, clock)
        try:
            secrets = {f"user{i}": totp.new_secret() for i in range(user_count)}
            with tempfile.TemporaryDirectory() as folder:
                people = Path(folder) / "people.csv"
                with people.open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["handle", "email", "totp_secret"])
                    for name, secret in secrets.items():
                        writer.writerow([name, f"{name}@example.com", secret])
                orgs.add_org(app, "acme")
                user_import.import_users(app, "acme", people)
            params = totp.TotpParams()
            done = not_ok = 0
            spent = 0.0
            while spent < seconds:
                clock.now += timedelta(seconds=params.period)  # every user may log in again
                codes = [(name, totp.code_at(s, clock.now, params)) for name, s in secrets.items()]
                for name, code in codes:
                    began = time.perf_counter()
                    ok = verification.verify(app, "acme", name, code).ok
                    spent += time.perf_counter() - began
                    done += 1
                    not_ok += not ok
                    if spent >= seconds:
                        break
            return done / spent, done, not_ok
        finally:
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per engine")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    window = 1
    raw = raw_per_second(min(args.seconds, 4.0), window)
    print(
        f"raw limit (Fernet decrypt + {2 * window + 1} TOTP codes, no database): "
        f"{raw:,.0f}/s ({1e6 / raw:.0f} µs each)"
    )
    for engine in args.engines.split(","):
        rate, done, not_ok = service_per_second(engine, args.seconds, args.users)
        print(
            f"{engine:<9} service verify: {rate:,.0f}/s ({1e6 / rate:.0f} µs each, {done} "
            f"verifications, {not_ok} not ok); raw/service = {raw / rate:.1f}x"
        )


if __name__ == "__main__":
    main()
