"""Lightbox settings: the only settings module.

Every deployment value is read from the environment through the typed readers in
`config.env`; docs/configuration.md lists each variable. Defaults fail closed: DEBUG is off,
and with LIGHTBOX_ENV=production a missing secret stops start-up.
"""

from __future__ import annotations

import os
from datetime import timedelta
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
    # The admin with django-otp's OTPAdminSite gated on our second-factor flag (accounts/admin_site.py).
    "accounts.admin_apps.LightboxAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp_webauthn",
    "axes",
    "django_scim",
    "mozilla_django_oidc",
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
    "django_otp.middleware.OTPMiddleware",
    # Ends sessions that are idle, too old, or ended from another device (sign out everywhere).
    "accounts.sessions.SessionPolicyMiddleware",
    # A signed-in user without a verified second factor reaches only sign-in/enrolment pages.
    "accounts.middleware.RequireSecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
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
    # conn_max_age 0: under ASGI each page request runs its ORM calls on a thread of its own, so a
    # persistent connection would be left behind per request (Django's ASGI deployment notes).
    # A pool (psycopg_pool) is not used: the lean API chain and the websocket consumers hold
    # connections on long-lived executor threads that never hand them back.
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
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
    # One test database per test run (by process id), so two runs on one machine never collide.
    _database["TEST"] = {"NAME": str(DATA_DIR / f"test-lightbox-{os.getpid()}.sqlite3")}
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
    # JPEG 2000 instances get a fast-decode (RLE) copy for rendering, shortly after ingest.
    "derive-fast-copies": {
        "task": "viewer.tasks.derive_fast_copies",
        "schedule": env_int("LIGHTBOX_FAST_COPY_INTERVAL_SECONDS", 30, minimum=5),
    },
}
# Run periodic work in a thread of the web process when there is no Celery beat.
LIGHTBOX_EMBEDDED_SCHEDULER = env_bool("LIGHTBOX_EMBEDDED_SCHEDULER", not REDIS_URL)

# --- Authentication ---------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses locked-out accounts/addresses before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
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

# Second factor (django-otp). Codes within one 30 s step of the clock are accepted, never twice.
OTP_TOTP_ISSUER = env_str("LIGHTBOX_OTP_ISSUER", "Lightbox")
OTP_TOTP_THROTTLE_FACTOR = 1  # each failure doubles the wait: 1 s, 2 s, 4 s, ...
OTP_BACKUP_CODE_THROTTLE_FACTOR = 1
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Paths a signed-in user may reach before passing the second factor (besides views marked with
# accounts.middleware.allow_before_second_factor). API paths authenticate per request themselves.
LIGHTBOX_BEFORE_SECOND_FACTOR_PREFIXES = ["/static/", "/healthz", "/dicomweb/", "/scim/", "/oidc/"]
# Passkeys (django-otp-webauthn). The relying-party id must be the site's domain (browsers refuse
# IP addresses), so locally passkeys work at http://localhost:8000, not http://127.0.0.1:8000.
OTP_WEBAUTHN_RP_ID = env_str("LIGHTBOX_WEBAUTHN_RP_ID", "localhost")
OTP_WEBAUTHN_RP_NAME = env_str("LIGHTBOX_WEBAUTHN_RP_NAME", "Lightbox")
OTP_WEBAUTHN_ALLOWED_ORIGINS = env_list("LIGHTBOX_WEBAUTHN_ORIGINS", ["http://localhost:8000"])
# Passkeys are a second factor only (accounts/passkeys.py enforces it too): no passwordless sign-in.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
# Step-up: sensitive actions need an OTP verification at most this old.
LIGHTBOX_STEP_UP_SECONDS = env_int("LIGHTBOX_STEP_UP_SECONDS", 300, minimum=30)
# Sessions: log off after this much inactivity, and in any case after SESSION_COOKIE_AGE.
LIGHTBOX_SESSION_IDLE_SECONDS = env_int("LIGHTBOX_SESSION_IDLE_SECONDS", 15 * 60, minimum=60)
LIGHTBOX_SESSION_WARNING_SECONDS = env_int("LIGHTBOX_SESSION_WARNING_SECONDS", 120, minimum=10)
# Password lockout (django-axes, accounts/lockout.py): 5 failures per account OR per client address
# lock sign-in for 15 minutes, counted from the lockout (attempts while locked do not extend it).
AXES_FAILURE_LIMIT = env_int("LIGHTBOX_LOCKOUT_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LIGHTBOX_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "accounts.lockout.username"
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# The client address as the audit trail sees it: X-Forwarded-For only with LIGHTBOX_TRUSTED_PROXY.
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "password"]

# SCIM 2.0 provisioning at /scim/v2/ (accounts/scim/, docs/scim.md). Each identity provider
# authenticates with its organisation's bearer token (`manage.py issue_scim_token`).
_SCIM_ROLES = ("clinician", "patient", "staff", "auditor", "admin")  # accounts.models.Role
LIGHTBOX_SCIM_GROUP_ROLES: dict[str, str] = {}
for _pair in env_list("LIGHTBOX_SCIM_GROUP_ROLES", []):
    _group, _sep, _role = (part.strip() for part in _pair.partition("="))
    if not _sep or not _group or _role not in _SCIM_ROLES:
        raise ImproperlyConfigured(
            f"LIGHTBOX_SCIM_GROUP_ROLES entries look like 'Group name=role' with a role in {_SCIM_ROLES}; "
            f"got {_pair!r}"
        )
    LIGHTBOX_SCIM_GROUP_ROLES[_group.casefold()] = _role
SCIM_SERVICE_PROVIDER = {
    "USER_ADAPTER": "accounts.scim.adapters.ScimUserAdapter",
    "GROUP_MODEL": "accounts.models.ScimGroup",
    "GROUP_ADAPTER": "accounts.scim.adapters.ScimGroupAdapter",
    "USER_FILTER_PARSER": "accounts.scim.filters.UserFilter",
    "GROUP_FILTER_PARSER": "accounts.scim.filters.GroupFilter",
    "SERVICE_PROVIDER_CONFIG_MODEL": "accounts.scim.config.ServiceProviderConfig",
    "BASE_LOCATION_GETTER": "accounts.scim.config.base_location",
    "GET_OBJECT_POST_PROCESSOR_GETTER": "accounts.scim.config.object_scope_getter",
    "GET_QUERYSET_POST_PROCESSOR_GETTER": "accounts.scim.config.queryset_scope_getter",
    # SECURITY: bearer-token check around every SCIM view; binds the request to one organisation.
    "AUTH_CHECK_MIDDLEWARE": "accounts.scim.auth.ScimBearerAuth",
    "AUTHENTICATION_SCHEMES": [
        {
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A per-organisation token from `manage.py issue_scim_token`.",
            "primary": True,
        }
    ],
}

# Single sign-on with OpenID Connect (mozilla-django-oidc; accounts/oidc.py, docs/sso.md). Off
# unless LIGHTBOX_OIDC_ISSUER is set. Endpoints come from the issuer's discovery document, read
# on first use (never at start-up), so an unreachable provider never stops Lightbox or password sign-in.
_OIDC_ROLES = ("clinician", "patient", "staff", "auditor", "admin")  # accounts.models.Role


def _oidc_map(name: str, *, allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in env_list(name, []):
        claim_value, sep, target = (part.strip() for part in pair.partition("="))
        if not sep or not claim_value or not target or (allowed is not None and target not in allowed):
            expected = f" with a role in {allowed}" if allowed else ""
            raise ImproperlyConfigured(f"{name} entries look like 'claim value=target'{expected}; got {pair!r}")
        mapping[claim_value] = target
    return mapping


LIGHTBOX_OIDC_ISSUER = (env_str("LIGHTBOX_OIDC_ISSUER", "") or "").strip().rstrip("/") or None
LIGHTBOX_OIDC_LABEL = env_str("LIGHTBOX_OIDC_LABEL", "") or "your organisation"
LIGHTBOX_OIDC_ORG_CLAIM = env_str("LIGHTBOX_OIDC_ORG_CLAIM", "") or None
LIGHTBOX_OIDC_ORG_MAP = _oidc_map("LIGHTBOX_OIDC_ORG_MAP")
LIGHTBOX_OIDC_DEFAULT_ORG = env_str("LIGHTBOX_OIDC_DEFAULT_ORG", "") or None
LIGHTBOX_OIDC_ROLE_CLAIM = env_str("LIGHTBOX_OIDC_ROLE_CLAIM", "") or None
LIGHTBOX_OIDC_ROLE_MAP = _oidc_map("LIGHTBOX_OIDC_ROLE_MAP", allowed=_OIDC_ROLES)
LIGHTBOX_OIDC_CREATE_USERS = env_bool("LIGHTBOX_OIDC_CREATE_USERS", False)
LIGHTBOX_OIDC_LINK_BY_EMAIL = env_bool("LIGHTBOX_OIDC_LINK_BY_EMAIL", False)
LIGHTBOX_OIDC_MFA_ACR_VALUES = env_list("LIGHTBOX_OIDC_MFA_ACR_VALUES", [])
LIGHTBOX_OIDC_TIMEOUT_SECONDS = env_int("LIGHTBOX_OIDC_TIMEOUT_SECONDS", 10, minimum=1)
OIDC_RP_SCOPES = " ".join(
    (env_str("LIGHTBOX_OIDC_SCOPES", "") or "openid email profile").replace(",", " ").split()
)
if "openid" not in OIDC_RP_SCOPES.split():
    raise ImproperlyConfigured(f"LIGHTBOX_OIDC_SCOPES must include 'openid'; got {OIDC_RP_SCOPES!r}")
OIDC_RP_CLIENT_ID = env_str("LIGHTBOX_OIDC_CLIENT_ID", "") or ""
OIDC_RP_CLIENT_SECRET = ""
if LIGHTBOX_OIDC_ISSUER:
    if IS_PRODUCTION and not LIGHTBOX_OIDC_ISSUER.startswith("https://"):
        raise ImproperlyConfigured("LIGHTBOX_OIDC_ISSUER must be an https:// URL when LIGHTBOX_ENV=production")
    if not OIDC_RP_CLIENT_ID:
        raise ImproperlyConfigured("LIGHTBOX_OIDC_CLIENT_ID must be set when LIGHTBOX_OIDC_ISSUER is")
    OIDC_RP_CLIENT_SECRET = env_secret("LIGHTBOX_OIDC_CLIENT_SECRET", generate_into=None, min_length=16)
    AUTHENTICATION_BACKENDS.append("accounts.oidc.LightboxOIDCBackend")
# SECURITY: authorization-code flow with PKCE (S256), a nonce, and RS256-signed ID tokens only.
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc:callback"
OIDC_TIMEOUT = LIGHTBOX_OIDC_TIMEOUT_SECONDS
LOGIN_REDIRECT_URL_FAILURE = "accounts:login"

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
# same-origin, not no-referrer: browsers send `Origin: null` on form POSTs under no-referrer
# (Fetch spec), which CSRF protection must refuse. Other sites still get no Referer at all, and
# the share-link page (/s/<token>) sends no-referrer itself.
SECURE_REFERRER_POLICY = "same-origin"
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
# Encoded viewer frames kept per web process for re-sending (viewer/stream.py); 0 disables.
LIGHTBOX_VIEWER_FRAME_CACHE_BYTES = env_int("LIGHTBOX_VIEWER_FRAME_CACHE_BYTES", 64 * 1024**2, minimum=0)
LIGHTBOX_MAX_INSTANCE_BYTES = env_int("LIGHTBOX_MAX_INSTANCE_BYTES", 4 * 1024**3, minimum=1024**2)

# --- Sharing ----------------------------------------------------------------------------------
# Resolves a share recipient's viewer principal (viewer/ looks it up by path; it never imports sharing/).
LIGHTBOX_SHARE_PRINCIPAL_RESOLVER = "sharing.principal"
# Addresses that used up their share-failure budget get 429 before sessions, CSRF and auth run.
MIDDLEWARE.insert(MIDDLEWARE.index("config.middleware.NoStoreMiddleware"), "sharing.middleware.ShareRateLimitMiddleware")
LIGHTBOX_SHARE_DEFAULT_DAYS = env_int("LIGHTBOX_SHARE_DEFAULT_DAYS", 7, minimum=1)
# A recipient's browser session after verification (never beyond the share's expiry).
LIGHTBOX_SHARE_SESSION_SECONDS = env_int("LIGHTBOX_SHARE_SESSION_SECONDS", 3600, minimum=60)
LIGHTBOX_SHARE_COOKIE_NAME = "__Host-lightbox-share" if TLS else "lightbox-share"
# Failed verifications before a share locks, and for how long.
LIGHTBOX_SHARE_LOCK_AFTER = env_int("LIGHTBOX_SHARE_LOCK_AFTER", 5, minimum=1)
LIGHTBOX_SHARE_LOCK_SECONDS = env_int("LIGHTBOX_SHARE_LOCK_SECONDS", 15 * 60, minimum=60)
# Per client address: unknown share links and failed verifications allowed per window, then 429.
LIGHTBOX_SHARE_IP_FAILURES = env_int("LIGHTBOX_SHARE_IP_FAILURES", 30, minimum=1)
LIGHTBOX_SHARE_IP_WINDOW_SECONDS = env_int("LIGHTBOX_SHARE_IP_WINDOW_SECONDS", 15 * 60, minimum=10)
LIGHTBOX_SHARE_DOWNLOAD_LINK_SECONDS = env_int("LIGHTBOX_SHARE_DOWNLOAD_LINK_SECONDS", 300, minimum=30)
LIGHTBOX_SHARE_EMAIL_CODE_SECONDS = env_int("LIGHTBOX_SHARE_EMAIL_CODE_SECONDS", 600, minimum=60)
# Ended share sessions, used download links and access history of shares that ended longer ago
# than this are purged by `manage.py expire_shares` (the audit trail keeps its own copy).
LIGHTBOX_SHARE_RETENTION_DAYS = env_int("LIGHTBOX_SHARE_RETENTION_DAYS", 90, minimum=1)
LIGHTBOX_SHARE_EXPIRY_INTERVAL = env_int("LIGHTBOX_SHARE_EXPIRY_SECONDS", 60, minimum=10)
CELERY_BEAT_SCHEDULE["sharing-expire"] = {
    "task": "sharing.tasks.expire_shares",
    "schedule": LIGHTBOX_SHARE_EXPIRY_INTERVAL,
}
# Public address used in e-mailed links when no request is at hand (e.g. https://lightbox.example.org).
LIGHTBOX_PUBLIC_URL = env_str("LIGHTBOX_PUBLIC_URL", "") or ""
# E-mail: printed to the console unless an SMTP server is configured.
EMAIL_HOST = env_str("EMAIL_HOST", "") or ""
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = (
    env_secret("EMAIL_HOST_PASSWORD", generate_into=None, min_length=1)
    if os.environ.get("EMAIL_HOST_PASSWORD") or os.environ.get("EMAIL_HOST_PASSWORD_FILE")
    else ""
)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", bool(EMAIL_HOST))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Lightbox <lightbox@localhost>")
