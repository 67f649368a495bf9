"""Deployment hazards reported by Django's system checks."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from django.core.checks import run_checks
from django.test import override_settings

from rtrec_site import settings as project_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT_DOC = ROOT / "docs/deployment.md"
DEVELOPMENT_KEY = project_settings.DEVELOPMENT_SECRET_KEY


def ids(messages):
    return {message.id for message in messages}


def manage_check(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def clean_env(tmp_path, **values):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTREC_")}
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"):
        env.pop(name, None)
    return {**env, "RTREC_VAR_DIR": str(tmp_path), **values}


def documented_environment():
    """The KEY=value lines of the first sh block in docs/deployment.md."""
    block = re.search(r"```sh\n(.*?)```", DEPLOYMENT_DOC.read_text(), re.S)
    lines = block.group(1).splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@override_settings(DEBUG=False, SECRET_KEY=DEVELOPMENT_KEY)
def test_the_development_key_with_debug_off_is_an_error():
    [error] = [m for m in run_checks() if m.id == "rtrec.E001"]

    assert error.is_serious()
    assert "SECRET_KEY" in error.hint


@override_settings(DEBUG=True, SECRET_KEY=DEVELOPMENT_KEY)
def test_the_development_key_is_fine_while_debugging():
    assert "rtrec.E001" not in ids(run_checks())


@override_settings(DEBUG=False, SECRET_KEY="a" * 10 + secrets.token_urlsafe(50))
def test_a_real_key_with_debug_off_passes():
    assert "rtrec.E001" not in ids(run_checks())


@override_settings(ALLOWED_HOSTS=["*"])
def test_any_host_is_a_deployment_warning():
    assert "rtrec.W001" in ids(run_checks(include_deployment_checks=True))
    assert "rtrec.W001" not in ids(run_checks())


@override_settings(
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
)
def test_an_in_process_channel_layer_is_a_deployment_warning():
    assert "rtrec.W002" in ids(run_checks(include_deployment_checks=True))


def test_an_uncapped_socket_limit_is_a_deployment_warning(settings):
    settings.RTREC = {**settings.RTREC, "WS_MAX_SOCKETS_PER_ADDRESS": 0}

    [warning] = [
        m for m in run_checks(include_deployment_checks=True) if m.id == "rtrec.W003"
    ]

    assert "WS_MAX_SOCKETS_PER_ADDRESS" in warning.msg


def test_manage_refuses_to_run_with_the_development_key_and_debug_off(tmp_path):
    result = manage_check(clean_env(tmp_path, DEBUG="false"))

    assert result.returncode != 0
    assert "rtrec.E001" in result.stderr


def test_the_documented_production_settings_pass_check_deploy(tmp_path):
    documented = documented_environment()
    assert documented["DEBUG"] == "false"
    documented["SECRET_KEY"] = secrets.token_urlsafe(50)
    documented["RTREC_MODEL_DIR"] = str(tmp_path / "models")

    result = manage_check(
        clean_env(tmp_path, **documented), "--deploy", "--fail-level", "WARNING"
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
