import uuid

from django.conf import settings
from django.db import models

from annotations.models.content import Comparison
from annotations.models.study import Criterion, Study


class Rater(models.Model):
    """Whoever rates: a clinician account, an external rater known by a label from imported data, or an AI judge."""

    class Kind(models.TextChoices):
        CLINICIAN = "clinician"
        EXTERNAL = "external"
        JUDGE = "judge"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    label = models.CharField(max_length=200)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="rater"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "label"], name="rater_kind_label_unique")]
        ordering = ["kind", "label"]

    def __str__(self) -> str:
        return f"{self.kind}:{self.label}"

    @property
    def is_judge(self) -> bool:
        return self.kind == self.Kind.JUDGE


class Assignment(models.Model):
    """One rater, one comparison, the order shown, and a lease. Addressed by an opaque public id."""

    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    class Purpose(models.TextChoices):
        RATING = "rating"
        CALIBRATION = "calibration"
        GOLD = "gold"
        IMPORTED = "imported"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LEASED)
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.RATING)
    # True when the comparison's first response is shown on the left; None for imported ratings.
    left_is_first = models.BooleanField(null=True)
    order_seed = models.BigIntegerField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    both_unacceptable = models.BooleanField(default=False)
    unacceptable_reason = models.TextField(blank=True)
    skip_reason = models.TextField(blank=True)
    rationale = models.TextField(blank=True)
    draft = models.JSONField(default=dict, blank=True)
    total_seconds = models.FloatField(default=0)
    active_seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "rater"], name="assignment_unique")]
        indexes = [
            models.Index(fields=["study", "status"]),
            models.Index(fields=["rater", "status"]),
            models.Index(fields=["comparison", "status"]),
        ]

    def __str__(self) -> str:
        return f"assignment {self.public_id}"


class Rating(models.Model):
    """One criterion of one assignment, in canonical orientation (negative favours response_first)."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="ratings")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    value = models.SmallIntegerField()
    rationale = models.TextField(blank=True)
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["assignment", "criterion"], name="rating_unique")]

    def __str__(self) -> str:
        return f"rating {self.pk} ({self.value:+d})"


class Judge(models.Model):
    """An AI evaluator: a reward model trained here, an LLM behind an OpenAI-compatible endpoint, or imported."""

    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model"
        LLM_ENDPOINT = "llm_endpoint"
        IMPORTED = "imported"

    rater = models.OneToOneField(Rater, on_delete=models.PROTECT, related_name="judge")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.IMPORTED)
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.rater.label


class Judgment(models.Model):
    """A judge's verdict on one criterion of one comparison, canonical orientation like Rating."""

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="judgments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    value = models.SmallIntegerField()
    left_is_first = models.BooleanField(null=True)
    both_unacceptable = models.BooleanField(default=False)
    rationale = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judge", "comparison", "criterion"], name="judgment_unique"),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk} ({self.value:+d})"
