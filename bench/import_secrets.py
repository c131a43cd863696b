"""How long `user import` takes for 100,000 users who arrive enrolled (a totp_secret each).

    .venv/bin/python bench/import_secrets.py [--rows 100000] [--engines sqlite,postgres]

Every secret is validated, sealed with Fernet under the active key (bound to its user's uid)
and inserted in batches; the raw limit printed beside it is the Fernet sealing alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import BenchClock, database, make_app
from mfactl import totp
from mfactl.crypto import SecretStore, generate_key
from mfactl.services import orgs, user_import, users


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("handle,email,name,totp_secret\n")
        for i in range(rows):
            handle.write(f"user{i},user{i}@example.com,User {i},{totp.new_secret()}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    store = SecretStore(generate_key())
    secret = totp.new_secret()
    began = time.perf_counter()
    for i in range(args.rows):
        store.seal_secret(f"{i:036d}", secret)
    raw = time.perf_counter() - began
    print(f"raw limit (Fernet sealing of {args.rows:,} secrets alone): {raw:.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        people = Path(folder) / "people.csv"
        write_csv(people, args.rows)
        for engine in args.engines.split(","):
            with database(engine) as url:
                app = make_app(url, BenchClock())
                try:
                    orgs.add_org(app, "acme")
                    began = time.perf_counter()
                    result = user_import.import_users(app, "acme", people)
                    spent = time.perf_counter() - began
                    enrolled = users.user_status(app, "acme", f"user{args.rows - 1}").mfa
                finally:
                    app.close()
            print(
                f"{engine:<9} user import of {result.imported:,} enrolled users: {spent:.1f} s "
                f"({result.imported / spent:,.0f} rows/s; last user's MFA: {enrolled}); "
                f"service/raw = {spent / raw:.1f}x"
            )


if __name__ == "__main__":
    main()
