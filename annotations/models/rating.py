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
            # The rater's latest pairs in a study (the claim's prompt spacing) in a few index entries, whatever
            # the history's length or the planner's statistics.
            models.Index(fields=["rater", "study", "id"], name="assignment_rater_recent"),
            # The pair page's "pair n of N" and "minutes rated today": the rater's done pairs in the study, and
            # their pairs submitted since midnight, without reading the rest of their history.
            models.Index(
                fields=["rater", "study"],
                condition=models.Q(status="submitted") & ~models.Q(purpose="calibration"),
                name="assignment_rater_done",
            ),
            models.Index(
                fields=["rater", "submitted_at"], condition=models.Q(status="submitted"), name="assignment_rater_day"
            ),
            # The rater's live lease in a study (the submit looks for another one): a lease or two, whatever the
            # history.
            models.Index(
                fields=["rater", "study"], condition=models.Q(status="leased"), name="assignment_rater_leased"
            ),
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
    """An AI evaluator: a reward model trained here, an LLM behind an OpenAI-compatible endpoint, or imported.

    Endpoint and reward-model judges belong to one study (its researcher configures them); imported judges
    are known only by their label, like external raters.
    """

    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", "Reward models trained here"
        LLM_ENDPOINT = "llm_endpoint", "LLM (OpenAI-compatible endpoint)"
        IMPORTED = "imported", "Imported judgments"

    class Mode(models.TextChoices):
        JOINT = "joint", "One request per pair and order (all criteria)"
        PER_CRITERION = "per_criterion", "One request per criterion"

    rater = models.OneToOneField(Rater, on_delete=models.PROTECT, related_name="judge")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.IMPORTED)
    study = models.ForeignKey(
        "annotations.Study", null=True, blank=True, on_delete=models.CASCADE, related_name="judges"
    )
    name = models.CharField(max_length=100, blank=True)
    # LLM endpoint: where and what to call. The key is never stored in clear: either the name of an
    # environment variable of the worker, or the key encrypted with a key derived from SECRET_KEY.
    base_url = models.URLField(max_length=500, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    api_key_env = models.CharField(max_length=100, blank=True)
    api_key_encrypted = models.TextField(blank=True)
    template = models.ForeignKey(
        "annotations.JudgeTemplate", null=True, blank=True, on_delete=models.PROTECT, related_name="judges"
    )
    persona = models.TextField(blank=True, help_text="Optional persona text put before the judge's instructions.")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.JOINT)
    swap = models.BooleanField(default=True, help_text="Judge every pair in both orders.")
    concurrency = models.PositiveSmallIntegerField(default=8)
    timeout_seconds = models.PositiveSmallIntegerField(default=120)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    temperature = models.FloatField(default=0.0)
    seed = models.BigIntegerField(null=True, blank=True, default=0)
    # Kind-specific settings: for reward-model judges {"reward_jobs": {criterion_key: training job id}}.
    config = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "name"], condition=models.Q(study__isnull=False), name="judge_study_name_unique"
            ),
        ]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name or self.rater.label

    @property
    def display_name(self) -> str:
        return self.name or self.rater.label


class Judgment(models.Model):
    """A judge's verdict on one criterion of one comparison, canonical orientation like Rating.

    For a judge run in both orders, `value` is the agreed verdict, or 0 (a tie) with consistency
    `inconsistent` when the two orders disagree; the per-order verdicts are on its JudgmentCalls.
    """

    class Consistency(models.TextChoices):
        CONSISTENT = "consistent", "Both orders agree"
        INCONSISTENT = "inconsistent", "Orders disagree (counted as a tie)"
        SINGLE = "single", "Judged in one order"

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="judgments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    value = models.SmallIntegerField()
    left_is_first = models.BooleanField(null=True)
    both_unacceptable = models.BooleanField(default=False)
    rationale = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    consistency = models.CharField(max_length=12, choices=Consistency.choices, default=Consistency.SINGLE)
    run = models.ForeignKey(
        "annotations.JudgeRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="judgments"
    )
    template_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judge", "comparison", "criterion"], name="judgment_unique"),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk} ({self.value:+d})"


class Span(models.Model):
    """A passage of one response marked by a clinician while rating (e.g. unsafe), by character offsets."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="spans")
    response = models.ForeignKey("annotations.Response", on_delete=models.CASCADE, related_name="spans")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    label = models.CharField(max_length=64)
    note = models.TextField(blank=True)
    quote = models.TextField(help_text="The response text between start and end when marked.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["assignment", "start", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="span_nonempty")]

    def __str__(self) -> str:
        return f"span {self.label} [{self.start}:{self.end}] of response {self.response_id}"


class SideBalance(models.Model):
    """Per rater and system: pairs shown with the system on the left minus on the right.

    Kept with each new assignment, so balancing sides reads two rows instead of the rater's history.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="+")
    system = models.ForeignKey("annotations.System", on_delete=models.CASCADE, related_name="+")
    lead = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "rater", "system"], name="side_balance_unique")]

    def __str__(self) -> str:
        return f"rater {self.rater_id} system {self.system_id}: {self.lead:+d}"


class Adjudication(models.Model):
    """A researcher's (or named adjudicator's) decision on a disputed criterion of a comparison."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="adjudications")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="adjudications")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+")
    value = models.SmallIntegerField(help_text="Canonical orientation: negative favours response_first.")
    reason = models.TextField()
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comparison", "criterion"], name="adjudication_unique"),
        ]

    def __str__(self) -> str:
        return f"adjudication of comparison {self.comparison_id} {self.criterion_id} ({self.value:+d})"


class SafetyReview(models.Model):
    """A researcher's review of a flagged comparison in the safety queue."""

    class Status(models.TextChoices):
        OPEN = "open", "To review"
        REVIEWED = "reviewed", "Reviewed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="safety_reviews")
    comparison = models.OneToOneField(Comparison, on_delete=models.CASCADE, related_name="safety_review")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"safety review of comparison {self.comparison_id} ({self.status})"
