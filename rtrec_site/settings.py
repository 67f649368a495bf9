"""Settings for rtrec, read from the environment.

Every value has an embedded default so that the project runs with nothing
started (SQLite in var/, the in-memory channel layer). A malformed value
stops the process with ImproperlyConfigured instead of being guessed at.
"""

import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from rtrec_site.env import env_bool, env_list, env_number, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("RTREC_VAR_DIR", str(BASE_DIR / "var")))

DEVELOPMENT_SECRET_KEY = "rtrec-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
DEBUG = env_bool("DEBUG", SECRET_KEY == DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

if SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    warnings.warn("SECRET_KEY is not set: using the development key", stacklevel=1)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "events",
    "recommendations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "rtrec_site.urls"
ASGI_APPLICATION = "rtrec_site.asgi.application"
WSGI_APPLICATION = "rtrec_site.wsgi.application"

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
            ],
        },
    },
]


def _database():
    url = env_str("DATABASE_URL")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "rtrec.sqlite3",
            "OPTIONS": {
                # WAL lets readers go on while an event is written;
                # IMMEDIATE takes the write lock up front, so two writers
                # wait on the busy timeout instead of failing to upgrade.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A connection kept per thread: opening one, with its PRAGMAs,
            # cost a quarter of a socket event's time when each message
            # opened its own.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
        }

    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from None
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _channel_layer():
    url = env_str("REDIS_URL")
    if not url:
        return {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("REDIS_URL must be a redis:// URL")
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [url], "capacity": 1000, "expiry": 30},
    }


CHANNEL_LAYERS = {"default": _channel_layer()}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

REST_FRAMEWORK = {
    # The key first: its challenge makes a missing credential a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "recommendations.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "recommendations.api.throttling.ApiKeyRateThrottle",
        "recommendations.api.throttling.AddressRateThrottle",
    ],
    # Requests per API key, and per client address for everyone else.
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env_str("RTREC_API_KEY_RATE", "6000/minute"),
        "address": env_str("RTREC_API_ADDRESS_RATE", "600/minute"),
    },
    "DEFAULT_PAGINATION_CLASS": "recommendations.api.pagination.CatalogPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "recommendations.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "rtrec REST API",
    "DESCRIPTION": (
        "Catalog, event ingestion, recommendations and model versions. "
        "Server-to-server calls send `Authorization: Api-Key <key>`; "
        "browsers use their Django session."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI from the sidecar package's static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Everything the recommender itself reads, in one namespace.
RTREC = {
    "REDIS_URL": env_str("REDIS_URL", ""),
    "MODEL_DIR": Path(env_str("RTREC_MODEL_DIR", str(VAR_DIR / "models"))),
    "DATA_DIR": Path(
        env_str("RTREC_DATA", str(BASE_DIR.parent / "shared/data/ml-100k"))
    ),
    "WS_TOKEN_TTL": env_number("RTREC_WS_TOKEN_TTL", 3600, minimum=1),
    "MAX_FRAME_BYTES": env_number("RTREC_MAX_FRAME_BYTES", 64 * 1024, minimum=256),
    # Messages a second one socket may send, on average and in a burst.
    "WS_RATE": env_number("RTREC_WS_RATE", 50, minimum=1),
    "WS_BURST": env_number("RTREC_WS_BURST", 100, minimum=1),
    # Refused messages a socket may run up within ten seconds before it is
    # closed (4429); 0 never closes.
    "WS_RATE_STRIKES": env_number("RTREC_WS_RATE_STRIKES", 100, minimum=0),
    # Open sockets per end user and per client address, across every
    # process when REDIS_URL is set (else in each); a socket over the cap
    # is told why and closed (4429). 0: no cap.
    "WS_MAX_SOCKETS_PER_USER": env_number(
        "RTREC_WS_MAX_SOCKETS_PER_USER", 20, minimum=0
    ),
    "WS_MAX_SOCKETS_PER_ADDRESS": env_number(
        "RTREC_WS_MAX_SOCKETS_PER_ADDRESS", 200, minimum=0
    ),
    # Seconds without a message from the client before its socket is
    # closed (4408); 0 never closes. Daphne's own pings catch dead peers.
    "WS_IDLE_SECONDS": env_number("RTREC_WS_IDLE_SECONDS", 1800, cast=float, minimum=0),
    # How often a socket joins its groups again, in case Redis forgot them.
    "WS_GROUP_REFRESH_SECONDS": env_number(
        "RTREC_WS_GROUP_REFRESH_SECONDS", 60, cast=float, minimum=0.1
    ),
    # How long a socket may show a list again while its user has not
    # acted (recommendations/answers.py); 0 rebuilds every list.
    "ANSWER_REUSE_SECONDS": env_number(
        "RTREC_ANSWER_REUSE_SECONDS", 1.0, cast=float, minimum=0
    ),
    "DEFAULT_N": 10,
    "MAX_N": 100,
    # How much one event of each kind says the user likes the item, on the
    # rating scale's distance from its midpoint. A rate uses its own value.
    "EVENT_WEIGHTS": {
        "view": 0.5,
        "click": 1.0,
        "add_to_cart": 2.0,
        "purchase": 3.0,
        "like": 2.0,
        "dislike": -2.0,
    },
    # A rating counts this much per star above the neutral one, so 1 star
    # counts against an item and 5 stars count like a purchase.
    "RATE_NEUTRAL": 2.0,
    "RATE_WEIGHT_PER_STAR": 0.5,
    "RATING_SCALE": (1.0, 5.0),
    # Folding a user in: ridge strength, and confidence per unit of weight.
    "FOLD_IN": {"REG": 1.0, "ALPHA": 1.0},
    # How much co-occurrence neighbours and item metadata count beside the
    # model's own scores (content fades as a user's history grows).
    "NEIGHBOUR_BLEND": 0.5,
    "CONTENT_BLEND": env_number("RTREC_CONTENT_BLEND", 0.3, cast=float, minimum=0),
    "CONTENT_EVENTS": 10,
    "USER_CACHE_SIZE": env_number("RTREC_USER_CACHE_SIZE", 10_000, minimum=1),
    # A model whose catalog has at least this many items gets an approximate
    # index when it loads, and ranks trained users from its candidates
    # (docs/scaling.md); 0: every user is scored over every item.
    "ANN_MIN_ITEMS": env_number("RTREC_ANN_MIN_ITEMS", 0, minimum=0),
    "TRENDING_HALF_LIFE": env_number(
        "RTREC_TRENDING_HALF_LIFE", 3600, cast=float, minimum=1
    ),
    # Items the trending counters keep (in process, up to a tenth more
    # between prunings); the weakest are dropped first.
    "TRENDING_MAX_ITEMS": env_number("RTREC_TRENDING_MAX_ITEMS", 10_000, minimum=1),
}

# Production hardening, on whenever DEBUG is off. `manage.py check
# --deploy` reads these; docs/deployment.md has a settings example.
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("RTREC_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SESSION_COOKIE_HTTPONLY = True
    # Opt-in: behind a TLS proxy that does not say so, every request would
    # be redirected again and again.
    SECURE_SSL_REDIRECT = env_bool("RTREC_SSL_REDIRECT", False)
    # A load balancer's health probe speaks plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_number("RTREC_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("RTREC_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("RTREC_HSTS_PRELOAD", False)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    if env_bool("RTREC_BEHIND_TLS_PROXY", False):
        # Only behind a proxy that sets this header itself on every request.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
