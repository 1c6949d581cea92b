"""evalplatform settings, driven by environment variables (see docs/operations.md).

Production is the default: DEBUG is off, SECRET_KEY is required, cookies are secure. `make run`
sets DEBUG=true and a local secret; tests use evalplatform.test_settings.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from evalplatform.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("EVALPLATFORM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is required: set it in the environment (make run generates a local one).")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rules.apps.AutodiscoverRulesConfig",
    "axes",
    "annotations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outside every other: error pages and reshaped API errors get no-store as well.
    "annotations.middleware.NoStoreMiddleware",
    "annotations.middleware.ApiErrorShapeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After authentication and messages, so its 400 page renders like any other; before every view.
    "annotations.middleware.BadInputMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "annotations.middleware.ContentSecurityPolicyMiddleware",
    "annotations.middleware.IdleTimeoutMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "evalplatform.urls"
WSGI_APPLICATION = "evalplatform.wsgi.application"
ASGI_APPLICATION = "evalplatform.asgi.application"

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
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: the web server and the worker share one file; wait instead of failing on a lock.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # PostgreSQL: bind parameters on the server and prepare a statement after its 5th use on a connection, so
    # the rating loop's queries are planned once per connection instead of once per request (planning cost more
    # than running them). Off for a transaction-pooling proxy (PgBouncer before 1.21) that cannot keep them.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "rules.permissions.ObjectPermissionBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
ARTIFACTS_ROOT = Path(env_str("ARTIFACTS_ROOT", str(VAR_DIR / "artifacts")))

# Security. Production defaults; each can be relaxed explicitly for a deployment behind a proxy.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Joining the browsers' preload list is a decision for whoever owns the domain (it is hard to undo), so the
# default is off and check --deploy is not asked to nag about it; SECURE_HSTS_PRELOAD=true opts in.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies append to X-Forwarded-For in front of the app; the client is the entry the outermost one
# wrote (annotations.lockout.client_address). Ignored unless BEHIND_TLS_PROXY: the header is then never trusted.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600)
# Clinicians' sessions end after this many seconds without a request (IdleTimeoutMiddleware).
IDLE_TIMEOUT_SECONDS = env_int("IDLE_TIMEOUT_SECONDS", 30 * 60)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)

AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# Failures count per username *and* address together, so one person's typos behind a shared NAT address lock
# no one else, and knowing a username does not let anyone lock it from elsewhere (annotations/lockout.py).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# A locked pair waits LOCKOUT_FIRST_DELAY_SECONDS; each failure after a wait doubles it, up to the maximum.
LOCKOUT_FIRST_DELAY_SECONDS = env_int("LOCKOUT_FIRST_DELAY_SECONDS", 60)
LOCKOUT_MAX_DELAY_SECONDS = env_int("LOCKOUT_MAX_DELAY_SECONDS", 3600)
# A pair's failures are forgotten this long after its last one (axes' cool-off is the memory, not the wait).
AXES_COOLOFF_TIME = timedelta(hours=env_int("LOCKOUT_FORGET_AFTER_HOURS", 24))
AXES_HANDLER = "annotations.lockout.GrowingDelayHandler"
AXES_CLIENT_IP_CALLABLE = "annotations.lockout.client_address"
# Attempts during a wait are refused without counting, so retrying the right password does not extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# The API answers a lockout in its one error shape; the login page explains it (annotations.middleware).
AXES_LOCKOUT_CALLABLE = "annotations.middleware.lockout_response"
# Passwords never reach axes' logs or its access-attempt rows.
AXES_SENSITIVE_PARAMETERS = ["password", "password1", "password2", "new_password1", "new_password2"]

# API tokens expire this many days after they are issued (a token is shown once; only its SHA-256 is stored).
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90)
# One-time password reset links made by a researcher or admin expire after this many hours.
PASSWORD_RESET_LINK_HOURS = env_int("PASSWORD_RESET_LINK_HOURS", 72)

REST_FRAMEWORK = {
    # Token first: an unauthenticated request then gets 401 with `WWW-Authenticate: Token` (not a bare 403).
    # Session authentication (the browser) enforces CSRF on writes; tokens are never sent by browsers on their own.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotations.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: the browsable API would be a second, script-heavy UI outside the Content-Security-Policy.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # LimitOffsetPagination with a max_limit: ?limit=2**64 must not reach the database as a LIMIT.
    "DEFAULT_PAGINATION_CLASS": "annotations.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "annotations.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"auth": env_str("AUTH_THROTTLE_RATE", "20/min")},
    # Throttles identify the client as the lockout does (annotations.lockout.client_address): X-Forwarded-For
    # only behind the proxy, so varying the header cannot buy a fresh throttle bucket.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT if BEHIND_TLS_PROXY else 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "evalplatform API",
    "DESCRIPTION": "Blinded clinician evaluation of therapeutic AI: studies, ratings, reports, exports, jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own origin (no CDN): the docs work offline and under the Content-Security-Policy.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "AccountRoleEnum": "annotations.models.accounts.Profile.Role",
        "StudyRoleEnum": "annotations.models.study.StudyMembership.Role",
    },
    # Every operation documents the API's one error shape next to its success response.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "annotations.api.errors.document_error_responses",
    ],
}

# Celery. The embedded default is the filesystem transport under var/broker (no services needed);
# production and tests use Redis. Job state lives in the database, so no result backend is needed.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
    # How long an unacknowledged (late-acked) message waits before the broker hands it out again. Recovery no
    # longer relies on it (a lost pool child's message is requeued at once and its claim takes the job back; a
    # dead machine's jobs are re-queued by heartbeat), so it only bounds how long a message reserved by a dead
    # worker waits. A redelivery while the job still runs is harmless: the claim in the database refuses it.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("out", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            # Exchange tables too (kombu's default is ./control, relative to wherever the worker started).
            "control_folder": str(_broker_dir / "control"),
            "data_folder_in": str(_broker_dir / "out"),
            "data_folder_out": str(_broker_dir / "out"),
            "processed_folder": str(_broker_dir / "processed"),
            "store_processed": False,
        }
    )
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"annotations.tasks.training_job_run": {"queue": "gpu"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TRAINING_SOFT_TIME_LIMIT = env_int("CELERY_TRAINING_SOFT_TIME_LIMIT", 24 * 3600)
CELERY_TRAINING_TIME_LIMIT = CELERY_TRAINING_SOFT_TIME_LIMIT + 600
# A running job writes a heartbeat this often; one silent for TRAINING_STALE_AFTER_SECONDS is re-queued.
TRAINING_HEARTBEAT_SECONDS = env_int("TRAINING_HEARTBEAT_SECONDS", 30)
TRAINING_STALE_AFTER_SECONDS = env_int("TRAINING_STALE_AFTER_SECONDS", 600)
# Generation runs beat and are recovered the same way; a run that keeps losing its worker fails after this many.
GENERATION_MAX_ATTEMPTS = env_int("GENERATION_MAX_ATTEMPTS", 3)
CELERY_BEAT_SCHEDULE = {
    "recover-training-jobs": {"task": "annotations.tasks.training_jobs_recover", "schedule": 300.0},
}

# Every report is computed on a Celery worker, never in a request. Resamples are capped per report, and each
# researcher may have this many reports queued or running at once (a clear message past it).
REPORT_MAX_RESAMPLES = env_int("REPORT_MAX_RESAMPLES", 10_000)
REPORT_MAX_ACTIVE_PER_USER = env_int("REPORT_MAX_ACTIVE_PER_USER", 2)
# Exports over this many ratings run on a Celery worker; smaller ones in the request.
EXPORT_INLINE_MAX_RATINGS = env_int("EXPORT_INLINE_MAX_RATINGS", 20_000)
# Written into every export's manifest; defaults to the git commit of the checkout.
CODE_VERSION = env_str("EVALPLATFORM_CODE_VERSION", "")

# Import limits (characters of one text field, and errors listed before stopping).
IMPORT_MAX_TEXT_CHARS = env_int("IMPORT_MAX_TEXT_CHARS", 20000)
IMPORT_MAX_ERRORS = env_int("IMPORT_MAX_ERRORS", 50)
# The largest request body (an import upload) the server reads; larger ones get 413 naming the limit.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 1024**3)

# Training jobs load base models only from inside these directories (colon-separated; realpath is compared),
# or from the artifacts of a finished job of the same study. Nothing else on the server's disk is reachable.
MODEL_ROOTS = [Path(root) for root in env_str("MODEL_ROOTS", str(VAR_DIR / "models")).split(":") if root]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"forbidden_without_traceback": {"()": "evalplatform.log_filters.ForbiddenWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's default config gives "django" its own console handler (with DEBUG) besides propagating to the
        # root, which printed each line twice; one handler here, and no propagation, prints it once.
        "django": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO"), "propagate": False},
        "django.request": {"filters": ["forbidden_without_traceback"]},
        "django.db.backends": {"level": "WARNING"},
    },
}
