import secrets
import uuid

from django.conf import settings
from django.db import models

from annotations.models.study import Study


def _link_token() -> str:
    return secrets.token_urlsafe(24)


class Survey(models.Model):
    """A patient preference survey shared by link (no account): how much each criterion matters, and which
    matters most. Stores no personal identifiers unless the researcher adds such a question."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        CLOSED = "closed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="surveys")
    title = models.CharField(max_length=200)
    introduction = models.TextField(blank=True)
    consent_text = models.TextField()
    # Researcher-defined extra questions: [{"key", "label", "kind": "choice"|"text", "options": [...],
    # "required": bool}]; answers are kept under these keys.
    questions = models.JSONField(default=list, blank=True)
    ask_ranking = models.BooleanField(default=False, help_text="Also ask respondents to rank the criteria.")
    link_token = models.CharField(max_length=64, unique=True, default=_link_token)
    # SHA-256 of an optional access code respondents must give; empty when the link alone suffices.
    access_code_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class SurveyResponse(models.Model):
    """One respondent's answers. `submission_key` is the one-time key of the form they were given, so a
    double submit or a replay of the same form stores nothing twice."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="responses")
    submission_key = models.CharField(max_length=64)
    importance = models.JSONField(help_text="criterion key -> importance 1..5")
    top_priority = models.CharField(max_length=64)
    ranking = models.JSONField(default=list, blank=True, help_text="criterion keys, most important first")
    answers = models.JSONField(default=dict, blank=True, help_text="question key -> answer")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["survey", "submission_key"], name="survey_response_submission_unique")
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"survey response {self.pk}"


class WeightSet(models.Model):
    """Named criterion weights for MODPO, merge and sweep jobs, with how they were derived."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="weight_sets")
    name = models.CharField(max_length=100)
    weights = models.JSONField(help_text="criterion key -> weight; the weights sum to 1")
    method = models.CharField(max_length=32, help_text="mean_importance, top_priority, borda, or manual")
    # The survey, the segment (a question and answer, or all respondents), the safety minimum, counts.
    derivation = models.JSONField(default=dict, blank=True)
    survey = models.ForeignKey(Survey, null=True, blank=True, on_delete=models.SET_NULL, related_name="weight_sets")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "name"], name="weight_set_name_unique")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
