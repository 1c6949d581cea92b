from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Evaluation studies"
    default_auto_field = "django.db.models.BigAutoField"
