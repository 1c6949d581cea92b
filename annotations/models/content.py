from django.db import models
from django.db.models import F, Q

from annotations.models.study import Study


class System(models.Model):
    """A model or pipeline that produced responses. Never shown to clinicians."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="systems")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    training_job = models.ForeignKey(
        "annotations.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="systems"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "name"], name="system_name_unique")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    """A conversation so far: a list of {"role", "content"} messages ending with the help-seeker's turn."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200)
    messages = models.JSONField()
    meta = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "external_id"], name="prompt_external_id_unique")]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.external_id


class Response(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="responses")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="responses")
    external_id = models.CharField(max_length=200)
    content = models.TextField()
    meta = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    excluded = models.BooleanField(default=False, help_text="Kept out of new comparisons (e.g. reveals its system).")
    excluded_from_exports = models.BooleanField(
        default=False, help_text="Set from the safety queue: its comparisons are left out of preference exports."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "external_id"], name="response_external_id_unique")]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.external_id


class Comparison(models.Model):
    """Two responses to one prompt, stored in canonical order (first.id < second.id).

    Ratings are stored in this orientation: negative values favour response_first.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    response_first = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    response_second = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    is_gold = models.BooleanField(default=False)
    gold_expected = models.JSONField(default=dict, blank=True, help_text="criterion key -> expected canonical value")
    gold_explanation = models.TextField(blank=True, help_text="Shown to a clinician as feedback after a gold item.")
    # Part of the calibration set: practice with feedback for new clinicians, taken before other gold items.
    is_calibration = models.BooleanField(default=False)
    excluded = models.BooleanField(default=False)
    # Live (leased or submitted) workspace assignments, kept by services.assignment under this row's lock,
    # so "below k" is an indexed filter and claiming never counts rows.
    active_assignments = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "response_first", "response_second"], name="comparison_unique"),
            models.CheckConstraint(condition=Q(response_first__lt=F("response_second")), name="comparison_canonical"),
        ]
        indexes = [
            models.Index(fields=["study", "excluded"]),
            # The claim's scan order (most started first, then oldest): LIMIT 1 stops at the first row it may take.
            models.Index(
                fields=["study", "is_gold", "excluded", "-active_assignments", "id"], name="comparison_pool_idx"
            ),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"comparison {self.pk}"


class ScreeningHit(models.Model):
    """Text in a response that may reveal which system wrote it; blocks opening the study until resolved."""

    class Resolution(models.TextChoices):
        OPEN = "open"
        EXCLUDED = "excluded", "Response excluded"
        DISMISSED = "dismissed", "Not revealing"

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="screening_hits")
    term = models.CharField(max_length=200)
    snippet = models.TextField()
    resolution = models.CharField(max_length=12, choices=Resolution.choices, default=Resolution.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["response", "term"], name="screening_hit_unique")]

    def __str__(self) -> str:
        return f"{self.term!r} in response {self.response_id}"
