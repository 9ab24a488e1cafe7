"""Lightbox settings: the only settings module.

Every deployment value is read from the environment through the typed readers in
`config.env`; docs/configuration.md lists each variable. Defaults fail closed: DEBUG is off,
and with LIGHTBOX_ENV=production a missing secret stops start-up.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from config.env import env_bool, env_choice, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

LIGHTBOX_ENV = env_choice("LIGHTBOX_ENV", "development", ("development", "production"))
IS_PRODUCTION = LIGHTBOX_ENV == "production"

DATA_DIR = Path(env_str("LIGHTBOX_DATA_DIR") or BASE_DIR / "var").resolve()
SECRETS_DIR = DATA_DIR / "secrets"


def _secret(name: str, file_name: str) -> str:
    # Development generates missing secrets once under var/; production must be told them.
    return env_secret(name, generate_into=None if IS_PRODUCTION else SECRETS_DIR / file_name)


SECRET_KEY = _secret("SECRET_KEY", "secret_key")
# Keyed separately from SECRET_KEY so rotating the session secret never breaks the audit chain.
AUDIT_HMAC_KEY = _secret("LIGHTBOX_AUDIT_KEY", "audit_key")

DEBUG = env_bool("DEBUG", False)
if DEBUG and IS_PRODUCTION:
    raise ImproperlyConfigured("DEBUG must be off when LIGHTBOX_ENV=production")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if IS_PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
if IS_PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name this server's host when LIGHTBOX_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "accounts",
    "audit",
    "archive",
    "viewer",
    "sharing",
    "privacy",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "config.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'lightbox.sqlite3'}"
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=0 if DATABASE_URL.startswith("sqlite") else 60)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we understand: {exc}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while one writer commits; IMMEDIATE takes the write lock at BEGIN
    # so two writers queue on busy_timeout instead of failing with "database is locked" mid-way.
    _database["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    _database["TEST"] = {"NAME": str(DATA_DIR / "test-lightbox.sqlite3")}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels, cache, background work ---------------------------------------------------------
REDIS_URL = env_str("REDIS_URL") or None
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("LIGHTBOX_REDIS_PREFIX", "lightbox")},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# Without a broker (the embedded default) tasks run in-process, at the call site.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
AUDIT_CHECKPOINT_INTERVAL = env_int("LIGHTBOX_AUDIT_CHECKPOINT_SECONDS", 300, minimum=10)
CELERY_BEAT_SCHEDULE = {
    "audit-checkpoint": {"task": "audit.tasks.write_checkpoint", "schedule": AUDIT_CHECKPOINT_INTERVAL},
}
# Run periodic work in a thread of the web process when there is no Celery beat.
LIGHTBOX_EMBEDDED_SCHEDULER = env_bool("LIGHTBOX_EMBEDDED_SCHEDULER", not REDIS_URL)

# --- Authentication ---------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Transport and browser security -----------------------------------------------------------
TLS = env_bool("LIGHTBOX_TLS", IS_PRODUCTION)
TRUSTED_PROXY = env_bool("LIGHTBOX_TRUSTED_PROXY", False)
if TRUSTED_PROXY:
    # SECURITY: only believe X-Forwarded-Proto when a proxy we run sets and strips it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("LIGHTBOX_SSL_REDIRECT", TLS)
SESSION_COOKIE_SECURE = TLS
CSRF_COOKIE_SECURE = TLS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_NAME = "__Host-lightbox-session" if TLS else "lightbox-session"
CSRF_COOKIE_NAME = "__Host-csrftoken" if TLS else "csrftoken"
SESSION_COOKIE_AGE = env_int("LIGHTBOX_SESSION_MAX_SECONDS", 12 * 3600, minimum=60)
SECURE_HSTS_SECONDS = env_int("LIGHTBOX_HSTS_SECONDS", 31536000 if TLS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = TLS
SECURE_HSTS_PRELOAD = env_bool("LIGHTBOX_HSTS_PRELOAD", TLS)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "worker-src": [CSP.NONE],
    "manifest-src": [CSP.NONE],
}

# --- Internationalisation, static files -------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
_COLLECTED_STATIC = env_bool("LIGHTBOX_COLLECTED_STATIC", IS_PRODUCTION)
# Serve straight from the source folders unless collectstatic ran (production images).
STATIC_ROOT = env_str("LIGHTBOX_STATIC_ROOT") or str(DATA_DIR / "static") if _COLLECTED_STATIC else None
# ServeStatic (an async-capable WhiteNoise) keeps the middleware chain free of thread hops.
SERVESTATIC_USE_FINDERS = not _COLLECTED_STATIC
SERVESTATIC_AUTOREFRESH = not _COLLECTED_STATIC
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        if _COLLECTED_STATIC
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Logging: JSON lines, request id, PHI kept out -------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.logging.RequestIdFilter"},
        "phi": {"()": "config.logging.PHIScrubFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "phi"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "uvicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}

# --- Lightbox ---------------------------------------------------------------------------------
LIGHTBOX_DEMO_SIZE = env_choice("LIGHTBOX_DEMO_SIZE", "full", ("full", "small"))
# The KEK source: a dotted path to a KeyProvider class taking the key directory.
LIGHTBOX_KEY_PROVIDER = env_str("LIGHTBOX_KEY_PROVIDER", "archive.blobstore.LocalFileKeyProvider")
LIGHTBOX_BLOB_CHUNK_BYTES = env_int("LIGHTBOX_BLOB_CHUNK_BYTES", 1024 * 1024, minimum=4096)
# Refuse objects whose decoded pixels would exceed this before decoding anything (bombs).
LIGHTBOX_MAX_PIXEL_BYTES = env_int("LIGHTBOX_MAX_PIXEL_BYTES", 2 * 1024**3, minimum=1024**2)
# Render worker processes (0 = one per core), their frame-cache budget and per-job CPU limit.
LIGHTBOX_RENDER_WORKERS = env_int("LIGHTBOX_RENDER_WORKERS", 0, minimum=0)
LIGHTBOX_RENDER_CACHE_BYTES = env_int("LIGHTBOX_RENDER_CACHE_BYTES", 512 * 1024**2, minimum=16 * 1024**2)
LIGHTBOX_RENDER_JOB_SECONDS = env_int("LIGHTBOX_RENDER_JOB_SECONDS", 5, minimum=1)
LIGHTBOX_MAX_INSTANCE_BYTES = env_int("LIGHTBOX_MAX_INSTANCE_BYTES", 4 * 1024**3, minimum=1024**2)
