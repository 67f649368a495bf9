"""What the benchmark scripts share: a throwaway project and real servers."""

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup_django(workdir, keep_services=False):
    """Point the project at an empty folder of its own and migrate it.

    Unless `keep_services`, DATABASE_URL and REDIS_URL are dropped, so the
    figures come from the embedded defaults and touch nothing shared.
    """
    os.environ["RTREC_VAR_DIR"] = str(workdir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtrec_site.settings")
    if not keep_services:
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
    warnings.filterwarnings("ignore", message="SECRET_KEY is not set")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port, env=None, server="daphne"):
    """A server process on 127.0.0.1:port, returned once it accepts."""
    command = {
        "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port)],
        "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)],
    }[server]
    process = subprocess.Popen(
        [sys.executable, *command, "rtrec_site.asgi:application"],
        cwd=ROOT,
        env=dict(env or os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server on port {port} did not start within 30 s")
