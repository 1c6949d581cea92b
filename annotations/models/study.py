from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

SCALE_CHOICES = [(3, "3-point (A / tie / B)"), (5, "5-point"), (7, "7-point")]


def default_span_labels() -> list[str]:
    return ["unsafe"]


class Criterion(models.Model):
    """One rubric item, versioned: exports and reports cite (key, version)."""

    key = models.SlugField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    title = models.CharField(max_length=200)
    question = models.TextField()
    better_when = models.TextField()
    worse_when = models.TextField()
    is_overall = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="criterion_key_version_unique")]
        ordering = ["key", "version"]

    def __str__(self) -> str:
        return f"{self.key} v{self.version}"


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        CLOSED = "closed"

    class RationaleMode(models.TextChoices):
        NONE = "none", "No rationale"
        OVERALL = "overall", "One rationale for the pair"
        PER_CRITERION = "per_criterion", "One rationale per criterion"

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    scale_points = models.PositiveSmallIntegerField(choices=SCALE_CHOICES, default=3)
    overlap_k = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    criteria = models.ManyToManyField(Criterion, through="StudyCriterion", related_name="studies")
    rationale_mode = models.CharField(max_length=20, choices=RationaleMode.choices, default=RationaleMode.OVERALL)
    rationale_required = models.BooleanField(default=False)
    rationale_min_length = models.PositiveIntegerField(default=0)
    one_prompt_per_rater = models.BooleanField(default=False, help_text="Never give a rater two pairs of one prompt.")
    lease_minutes = models.PositiveIntegerField(default=30)
    quota_per_rater = models.PositiveIntegerField(null=True, blank=True)
    min_shared_per_rater_pair = models.PositiveIntegerField(default=0)
    calibration_size = models.PositiveIntegerField(default=0)
    gold_rate = models.FloatField(default=0.0, help_text="Share of unmarked gold items mixed in after calibration.")
    screening_override = models.BooleanField(default=False, help_text="Open despite unresolved screening hits.")
    space_prompts = models.BooleanField(
        default=True, help_text="Keep pairs of the same prompt apart in each clinician's sequence."
    )
    guidelines = models.TextField(
        blank=True, help_text="Guidelines for clinicians (Markdown), shown before the first pair."
    )
    span_labels = models.JSONField(
        default=default_span_labels, blank=True, help_text="Labels a clinician can put on a marked span of a response."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    @property
    def max_abs_value(self) -> int:
        return self.scale_points // 2


class StudyCriterion(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="study_criteria")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "criterion"], name="study_criterion_unique"),
            models.UniqueConstraint(fields=["study", "position"], name="study_criterion_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.study_id}#{self.position}: {self.criterion_id}"


class StudyMembership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        RESEARCHER = "researcher"
        CLINICIAN = "clinician"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_memberships")
    role = models.CharField(max_length=12, choices=Role.choices)
    quota = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.study_id} ({self.role})"


class RubricVersion(models.Model):
    """A numbered snapshot of a study's criteria, with what changed from the version before."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="rubric_versions")
    number = models.PositiveIntegerField()
    # [{"key", "version", "title", "question", "better_when", "worse_when", "position", "is_overall"}]
    criteria = models.JSONField(default=list)
    changes = models.JSONField(default=list, blank=True, help_text="Plain-language lines: what changed.")
    note = models.TextField(blank=True)
    after_open = models.BooleanField(default=False, help_text="Made while the study was open or closed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "-number"]
        constraints = [models.UniqueConstraint(fields=["study", "number"], name="rubric_version_unique")]

    def __str__(self) -> str:
        return f"{self.study_id} rubric v{self.number}"
