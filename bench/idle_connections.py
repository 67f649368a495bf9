"""How many idle sockets one server process holds, and what each costs.

Opens sockets to the real consumer (token-authenticated, each joined to
its user's group and the models group) until the count asked for or the
file limit, and reads the server's resident memory before and after.
"""

import time

from harness import (
    free_port,
    raise_open_files,
    rss_kib,
    server_env,
    start_server,
    stop_server,
)
from loadgen import hold_idle_sockets, run, run_load

# Descriptors this process keeps for itself besides the sockets.
SPARE_FILES = 64


def measure_idle(var_dir, server, tokens, wanted, redis_url=None):
    """Sockets held and memory per socket; with `redis_url`, the server's
    channel layer is channels-redis instead of the in-memory one."""
    limit = raise_open_files(wanted + SPARE_FILES)
    count = min(wanted, limit - SPARE_FILES)
    port = free_port()
    env = server_env(var_dir, **({"REDIS_URL": redis_url} if redis_url else {}))
    process = start_server(port, env, server, open_files=wanted + SPARE_FILES)
    base_url = f"ws://127.0.0.1:{port}"
    try:
        # One socket first, so that what a first connection loads once
        # (the consumer's imports, the database connection) is in the
        # baseline and not charged to every socket.
        run(run_load([base_url], "recommend", tokens[:1], 0.2))
        time.sleep(0.5)
        measures, opened, failures, seconds = run(
            hold_idle_sockets(base_url, tokens, count, lambda: rss_kib(process.pid))
        )
    finally:
        stop_server(process)
    before, middle, after = measures
    # The second half's cost per socket is the one to trust: memory the
    # process had freed earlier (loading the model, say) is reused by the
    # first sockets without showing in its RSS.
    second_half = opened[1] - opened[0]
    return {
        "server": server,
        "channel_layer": "redis" if redis_url else "in-memory",
        "asked": wanted,
        "file_limit": limit,
        "opened": opened[-1],
        "failures": failures,
        "open_seconds": seconds,
        "rss_before_kib": before,
        "rss_half_kib": middle,
        "rss_after_kib": after,
        "per_connection_kib": (after - middle) / second_half if second_half else 0.0,
        "per_connection_overall_kib": (after - before) / opened[-1]
        if opened[-1]
        else 0.0,
    }
