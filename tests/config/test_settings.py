"""Settings load in each mode, fail loudly on bad values, and pass `check --deploy`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRONG = "x" * 20 + "settings-test-secret-value-0123456789"


def _run(code: str, env_overrides: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTBOX_", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "DEBUG"))}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "LIGHTBOX_DATA_DIR": str(tmp_path / "data")})
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


SETUP = "import django; django.setup(); from django.conf import settings; "


def test_development_generates_secrets_once_with_mode_0600(tmp_path):
    first = _run(SETUP + "print(settings.SECRET_KEY)", {}, tmp_path)
    second = _run(SETUP + "print(settings.SECRET_KEY)", {}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    secret_file = tmp_path / "data" / "secrets" / "secret_key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "secrets" / "audit_key").read_text() != secret_file.read_text()


def test_development_defaults_fail_closed(tmp_path):
    result = _run(SETUP + "print(settings.DEBUG, settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND'])", {}, tmp_path)
    assert result.stdout.split() == ["False", "django.db.backends.sqlite3", "channels.layers.InMemoryChannelLayer"]


def test_production_without_secret_key_names_the_variable(tmp_path):
    result = _run(SETUP, {"LIGHTBOX_ENV": "production", "ALLOWED_HOSTS": "pacs.example.org"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "SECRET_KEY_FILE" in result.stderr


def test_production_reads_secret_from_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(STRONG)
    env = {
        "LIGHTBOX_ENV": "production",
        "ALLOWED_HOSTS": "pacs.example.org",
        "SECRET_KEY_FILE": str(secret),
        "LIGHTBOX_AUDIT_KEY": STRONG[::-1],
    }
    result = _run(SETUP + f"print(settings.SECRET_KEY == open({str(secret)!r}).read())", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_malformed_boolean_is_refused(tmp_path):
    result = _run(SETUP, {"DEBUG": "maybe"}, tmp_path)
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr


def test_redis_url_selects_the_redis_channel_layer(tmp_path):
    result = _run(SETUP + "print(settings.CHANNEL_LAYERS['default']['BACKEND'], settings.CELERY_TASK_ALWAYS_EAGER)", {"REDIS_URL": "redis://127.0.0.1:6379/0"}, tmp_path)
    assert result.stdout.split() == ["channels_redis.core.RedisChannelLayer", "False"]


def _production_env(tmp_path, **overrides) -> dict:
    """Production settings that pass every deploy check except what `overrides` changes."""
    return {
        "LIGHTBOX_ENV": "production",
        "LIGHTBOX_TLS": "1",
        "ALLOWED_HOSTS": "pacs.example.org",
        "SECRET_KEY": "k7#" + STRONG + "Qz!9",
        "LIGHTBOX_AUDIT_KEY": STRONG[::-1],
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **overrides,
    }


def test_check_deploy_is_clean_in_production_with_tls(tmp_path):
    env = _production_env(tmp_path, LIGHTBOX_WEBAUTHN_RP_ID="pacs.example.org",
                          LIGHTBOX_WEBAUTHN_ORIGINS="https://pacs.example.org")
    result = _run("import sys; from django.core.management import execute_from_command_line; execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])", env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_with_localhost_passkey_settings_fails_the_deploy_check(tmp_path):
    env = _production_env(tmp_path)
    result = _run("from django.core.management import execute_from_command_line; execute_from_command_line(['manage.py', 'check', '--deploy'])", env, tmp_path)
    assert result.returncode != 0
    assert "accounts.E003" in result.stderr


def test_production_without_tls_fails_the_deploy_check(tmp_path):
    env = _production_env(tmp_path, LIGHTBOX_TLS="0")
    result = _run("from django.core.management import execute_from_command_line; execute_from_command_line(['manage.py', 'check', '--deploy'])", env, tmp_path)
    assert result.returncode != 0
    assert "accounts.E002" in result.stderr
