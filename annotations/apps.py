from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Evaluation studies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Permissions register with django-rules on import; load them before any request or command asks.
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_login_failed

        from annotations import permissions  # noqa: F401
        from annotations.services.accounts import lockout_record, login_failed_record

        user_login_failed.connect(login_failed_record, dispatch_uid="annotations.login_failed_record")
        user_locked_out.connect(lockout_record, dispatch_uid="annotations.lockout_record")
