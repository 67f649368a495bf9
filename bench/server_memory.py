"""Resident memory of one server process, before and after it loads the
active model and the catalog, per catalog size."""

import time

from harness import free_port, manage, rss_kib, server_env, start_server, stop_server
from loadgen import run, run_load


def prepare_catalog(var_dir, users, items, interactions):
    """A synthetic catalog of `items` items with a trained rating model."""
    manage(var_dir, "migrate", "--noinput")
    manage(
        var_dir,
        "generate_synthetic",
        f"--users={users}",
        f"--items={items}",
        f"--interactions={interactions}",
    )
    manage(var_dir, "train", "--feedback", "explicit")


def measure_model_memory(var_dir, server, token):
    port = free_port()
    process = start_server(port, server_env(var_dir), server)
    try:
        time.sleep(0.5)
        started = rss_kib(process.pid)
        # The first recommendation loads the model and the catalog.
        result = run(run_load([f"ws://127.0.0.1:{port}"], "recommend", [token], 0.2))
        if result.errors or not result.completed:
            raise SystemExit(f"no recommendation from the server: {result.errors}")
        time.sleep(0.5)
        loaded = rss_kib(process.pid)
    finally:
        stop_server(process)
    return {"rss_started_kib": started, "rss_loaded_kib": loaded}
