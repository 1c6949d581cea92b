import uuid

from django.conf import settings
from django.db import models

from annotations.models.content import Comparison, System
from annotations.models.jobs import JobStatus, PreferenceExport, TrainingJob
from annotations.models.rating import Judge
from annotations.models.study import Study


class JudgeTemplate(models.Model):
    """The instructions an LLM judge is given, versioned like rubrics: every judgment cites (key, version).

    `system_prompt` and `user_prompt` are Python format strings; docs/judges.md lists their fields.
    """

    key = models.SlugField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    title = models.CharField(max_length=200)
    system_prompt = models.TextField()
    user_prompt = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="judge_template_key_version_unique")]
        ordering = ["key", "-version"]

    def __str__(self) -> str:
        return f"{self.key} v{self.version}"


class JudgeRun(models.Model):
    """One run of a judge over a study's comparisons: a Celery job whose state lives here.

    Re-running is safe: comparisons whose calls are already stored are skipped.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="runs")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="judge_runs")
    criterion_keys = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    run_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    total_comparisons = models.PositiveIntegerField(default=0)
    done_comparisons = models.PositiveIntegerField(default=0)
    failed_comparisons = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    failed_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    # Per-run results that are not per item: e.g. a reward-model judge's calibrated tie bands.
    result = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"judge run {self.public_id}"

    @property
    def progress(self) -> float:
        if not self.total_comparisons:
            return 1.0 if self.status == JobStatus.SUCCEEDED else 0.0
        return min(1.0, (self.done_comparisons + self.failed_comparisons) / self.total_comparisons)


class JudgmentCall(models.Model):
    """One request to a judge: a comparison in one order (and one criterion in per-criterion mode).

    Keeps what came back, raw, with the parsed verdict in canonical orientation, so that every judgment
    can be traced to the exact text the judge produced.
    """

    class Status(models.TextChoices):
        OK = "ok"
        FAILED = "failed"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="judgment_calls")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="calls")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgment_calls")
    # True when the comparison's first response was shown as "Response 1".
    left_is_first = models.BooleanField()
    criterion_key = models.CharField(max_length=64, blank=True, help_text="Empty when all criteria were asked at once.")
    status = models.CharField(max_length=8, choices=Status.choices)
    template = models.ForeignKey(JudgeTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    template_version = models.PositiveIntegerField(null=True, blank=True)
    raw_output = models.TextField(blank=True)
    # criterion key -> canonical value (negative favours the comparison's first response)
    verdict = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    both_unacceptable = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=1)
    latency_ms = models.FloatField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["judge", "comparison", "left_is_first", "criterion_key"], name="judgment_call_unique"
            ),
        ]
        indexes = [models.Index(fields=["run", "status"])]

    def __str__(self) -> str:
        return f"judgment call {self.pk} ({self.status})"


class GenerationRun(models.Model):
    """Responses to a study's prompts from a trained job's artifact or an OpenAI-compatible endpoint,
    stored as a new System with its lineage (job, export, base model, generation settings)."""

    class Source(models.TextChoices):
        TRAINING_JOB = "training_job", "A trained model of this study"
        ENDPOINT = "endpoint", "An OpenAI-compatible endpoint"

    class PromptSet(models.TextChoices):
        ALL = "all", "All prompts of the study"
        TEST_SPLIT = "test_split", "The test split of an export"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="generation_runs")
    source = models.CharField(max_length=16, choices=Source.choices)
    training_job = models.ForeignKey(
        TrainingJob, null=True, blank=True, on_delete=models.PROTECT, related_name="generation_runs"
    )
    base_url = models.URLField(max_length=500, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    api_key_env = models.CharField(max_length=100, blank=True)
    prompt_set = models.CharField(max_length=12, choices=PromptSet.choices, default=PromptSet.ALL)
    export = models.ForeignKey(
        PreferenceExport, null=True, blank=True, on_delete=models.PROTECT, related_name="generation_runs"
    )
    system_name = models.CharField(max_length=200)
    generation_settings = models.JSONField(default=dict, blank=True)
    system = models.ForeignKey(System, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    run_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    total_prompts = models.PositiveIntegerField(default=0)
    done_prompts = models.PositiveIntegerField(default=0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"generation run {self.public_id}"

    @property
    def progress(self) -> float:
        if not self.total_prompts:
            return 1.0 if self.status == JobStatus.SUCCEEDED else 0.0
        return min(1.0, self.done_prompts / self.total_prompts)
