"""How fast POST /api/events/ stores batches of 1,000 events.

Starts a real server (uvicorn on 127.0.0.1, a free port, `--workers`
processes, no throttling) on a migrated database holding a synthetic
catalog, 5,000 users and 100,000 earlier events, then POSTs batches of
new events, each with its own event_id, over `--clients` keep-alive
connections at once, and reports events stored per second of wall time.
It runs on SQLite (a file in a temporary folder) and, when DATABASE_URL
is set, on that PostgreSQL database too: point it at a throwaway one,
created if missing, because the run writes users, items and events.

    python bench/api_ingest.py [--batches 30] [--workers 1] [--clients 1] [--json]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rtrec_bench \\
        python bench/api_ingest.py --workers 2 --clients 2
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH_SIZE = 1000
N_ITEMS = 2000
N_USERS = 5000
# Events already stored before the run: MovieLens 100K's size, so the
# indexes the inserts maintain are not empty.
N_HISTORY = 100_000
KINDS = ["view", "click", "click", "add_to_cart", "purchase", "like", "rate"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--clients", type=int, default=1, help="connections posting at once"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one-backend", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one_backend:
        print(json.dumps(run_one_backend(args)))
        return

    postgres_url = os.environ.get("DATABASE_URL")
    results = [measure(None, args)]
    if postgres_url:
        results.append(measure(postgres_url, args))

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


def measure(database_url, args):
    """Run this script for one database in a fresh process: Django's
    settings read DATABASE_URL once, at start."""
    with tempfile.TemporaryDirectory(prefix="rtrec-api-bench-") as workdir:
        env = dict(os.environ, RTREC_VAR_DIR=workdir)
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url

        command = [
            sys.executable,
            __file__,
            "--one-backend",
            f"--batches={args.batches}",
            f"--workers={args.workers}",
            f"--clients={args.clients}",
        ]
        finished = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, check=False
        )
    if finished.returncode != 0:
        sys.stderr.write(finished.stderr)
        raise SystemExit(f"the benchmark failed on {database_url or 'SQLite'}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def run_one_backend(args):
    create_postgres_database(os.environ.get("DATABASE_URL"))
    raw_key = prepare_database()

    from django.db import connection

    vendor = connection.vendor
    connection.close()

    port = free_port()
    server = start_server(port, args.workers)
    try:
        seconds, timings, duplicates = post_batches(
            port, raw_key, args.batches, args.clients
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return report(vendor, seconds, timings, duplicates, args)


def create_postgres_database(url):
    if not url:
        return
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    server = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"] or "postgres",
        "password": config["PASSWORD"] or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        found = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not found:
            name = psycopg.sql.Identifier(config["NAME"])
            admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(name))


def prepare_database():
    """Migrate, add a catalog, users and a history, return a fresh API key."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtrec_site.settings")
    import warnings

    warnings.filterwarnings("ignore", message="SECRET_KEY is not set")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from events.models import ApiKey

    call_command("migrate", verbosity=0)
    seed_history()
    with connection.cursor() as cursor:
        # Fresh statistics, as a database that has been running would have.
        cursor.execute("ANALYZE")
    _, raw_key = ApiKey.objects.issue("api ingest benchmark")
    return raw_key


def seed_history():
    from django.utils import timezone

    from events.models import EndUser, Interaction, Item

    items = Item.objects.bulk_create(
        (
            Item(external_id=f"b{i}", title=f"Bench item {i}", genres="Drama")
            for i in range(N_ITEMS)
        ),
        ignore_conflicts=True,
    )
    EndUser.objects.bulk_create(
        (EndUser(external_id=f"bench-{u}") for u in range(N_USERS)),
        ignore_conflicts=True,
    )
    if Interaction.objects.filter(event_id__startswith="history-").exists():
        return

    item_pks = list(Item.objects.values_list("pk", flat=True)[: len(items)])
    user_pks = list(EndUser.objects.values_list("pk", flat=True)[:N_USERS])
    rng, now = random.Random(1), timezone.now()
    Interaction.objects.bulk_create(
        (
            Interaction(
                user_id=rng.choice(user_pks),
                item_id=rng.choice(item_pks),
                kind="rate",
                value=rng.randint(1, 5),
                created_at=now,
                event_id=f"history-{n}",
            )
            for n in range(N_HISTORY)
        ),
        batch_size=5000,
    )


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port, workers):
    env = dict(
        os.environ,
        RTREC_API_KEY_RATE="1000000/second",
        LOG_LEVEL="WARNING",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "rtrec_site.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start within 30 s")


def make_batches(n_batches, seed=0):
    """JSON bodies of new events, encoded before any clock starts."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    bodies = []
    for b in range(n_batches):
        events = []
        for n in range(BATCH_SIZE):
            kind = rng.choice(KINDS)
            event = {
                "user": f"bench-{rng.randrange(N_USERS)}",
                "event": kind,
                "item": f"b{rng.randrange(N_ITEMS)}",
                "event_id": f"{run}-{b}-{n}",
            }
            if kind == "rate":
                event["value"] = rng.randint(1, 5)
            events.append(event)
        bodies.append(json.dumps(events).encode())
    return bodies


class Poster:
    """One keep-alive connection that POSTs event batches and times them."""

    def __init__(self, port, raw_key):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {
            "Authorization": f"Api-Key {raw_key}",
            "Content-Type": "application/json",
        }

    def post(self, body, expected=201):
        started = time.perf_counter()
        self.connection.request("POST", "/api/events/", body, self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
        if response.status != expected:
            raise SystemExit(f"POST answered {response.status}: {answer[:300]!r}")
        return elapsed

    def post_all(self, bodies):
        return [self.post(body) for body in bodies]


def post_batches(port, raw_key, n_batches, n_clients):
    """Wall-clock seconds for n_batches new batches over n_clients
    connections, each batch's own time, and the times of resent ones."""
    bodies = make_batches(n_clients + n_batches)
    warmup, timed = bodies[:n_clients], bodies[n_clients:]
    posters = [Poster(port, raw_key) for _ in range(n_clients)]
    for poster, body in zip(posters, warmup, strict=True):
        poster.post(body)

    shares = [timed[n::n_clients] for n in range(n_clients)]
    with ThreadPoolExecutor(n_clients) as pool:
        started = time.perf_counter()
        timings = list(pool.map(Poster.post_all, posters, shares))
        seconds = time.perf_counter() - started

    # A retried batch: every event is a duplicate, nothing is stored.
    duplicates = [posters[0].post(body, expected=200) for body in timed[:5]]
    return seconds, [t for share in timings for t in share], duplicates


def report(vendor, seconds, timings, duplicates, args):
    return {
        "database": vendor,
        "server_workers": args.workers,
        "clients": args.clients,
        "batches": len(timings),
        "batch_size": BATCH_SIZE,
        "events_per_second": len(timings) * BATCH_SIZE / seconds,
        "batch_ms_median": statistics.median(timings) * 1e3,
        "batch_ms_max": max(timings) * 1e3,
        "duplicate_batch_ms_median": statistics.median(duplicates) * 1e3,
    }


def print_table(results):
    print(
        f"{'database':<12}{'workers':>8}{'clients':>8}{'batches':>8}{'events/s':>12}"
        f"{'batch ms (median)':>20}{'max':>8}{'all-duplicate ms':>18}"
    )
    for row in results:
        print(
            f"{row['database']:<12}{row['server_workers']:>8}{row['clients']:>8}"
            f"{row['batches']:>8}{row['events_per_second']:>12,.0f}"
            f"{row['batch_ms_median']:>20.1f}{row['batch_ms_max']:>8.1f}"
            f"{row['duplicate_batch_ms_median']:>18.1f}"
        )


if __name__ == "__main__":
    main()
