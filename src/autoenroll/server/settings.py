"""Django settings, all derived from the validated `ServerConfig` (see config.py)."""

from __future__ import annotations

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .config import ConfigError, get_config

try:
    CONFIG = get_config()
except ConfigError as exc:  # turned into a one-line message by the CLI
    raise ImproperlyConfigured(str(exc)) from None

# Importing settings neither changes the environment nor writes Kerberos files: the Kerberos environment
# (replay cache, clock skew) is prepared at start-up by `serve`, `init` and wsgi.py (`autoenroll.server.startup`).

SECRET_KEY = CONFIG.secret_key_value()
DEBUG = CONFIG.debug
ALLOWED_HOSTS = CONFIG.effective_allowed_hosts

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # its /api/docs assets served from here, not a CDN the admin's network may not reach
    "axes",
    "autoenroll.server",
    "autoenroll.server.tenants",
    "autoenroll.server.directory",
    "autoenroll.server.kerberos",
    "autoenroll.server.certificates",
    "autoenroll.server.enrollment",
    "autoenroll.server.ces",
    "autoenroll.server.notices",
    "autoenroll.server.audit",
    "autoenroll.server.web",
    "autoenroll.server.api",
]

MIDDLEWARE = [
    "autoenroll.server.api.direct.DirectEnrollmentMiddleware",  # the agent's logon: before the pages' layers
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/ under `serve` (no web server in front needed)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "autoenroll.server.enrollment.boundary.EnrollmentBoundaryMiddleware",  # JSON from programs only
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers locked-out sign-ins
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses locked-out users before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
# Lock a user name out from one address after 5 failed sign-ins, for 30 minutes.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.5
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_SENSITIVE_PARAMETERS = ["password", "login_password"]

LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "web:login"

ROOT_URLCONF = "autoenroll.server.urls"
WSGI_APPLICATION = "autoenroll.server.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # An admin overrides a template (the expiry notices' texts, say) by a file of the same name here.
        "DIRS": [CONFIG.data_dir / "templates"],
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

# Connections are kept (per worker thread): opening one per request costs more than the request's queries.
DATABASES = {"default": dj_database_url.parse(CONFIG.effective_database_url, conn_max_age=600, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "autoenroll.server.utils.sqlite"  # Django's, placeholders converted once
    # Several server workers share the file: wait for the write lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by the server, and a statement run 5 times on a connection prepared there (psycopg's
    # prepare_threshold; Django's default is neither): PostgreSQL then parses and plans a logon's statements
    # once, not at every logon, which took a quarter to a third of its CPU per logon. The URL's options win
    # (`?server_side_binding=false`: neither). docs/scale.md says what this asks of poolers and migrations.
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": 5,
        **DATABASES["default"].get("OPTIONS", {}),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Served from the apps' static folders as installed (WhiteNoise's finders): no STATIC_ROOT, no collectstatic
# step for an admin to forget.
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "autoenroll": {"handlers": ["console"], "level": CONFIG.log_level, "propagate": False},
        # Django's own report of a 500 (with its traceback): without DEBUG it would go nowhere.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
