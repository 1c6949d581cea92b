import uuid

from django.conf import settings
from django.db import models

from annotations.models.study import Study


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PreferenceExport(models.Model):
    """An immutable dataset snapshot: files, manifest and card under ARTIFACTS_ROOT/exports/<public_id>."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=20)
    file_format = models.CharField(max_length=10, default="jsonl")
    criterion_keys = models.JSONField(default=list, blank=True)
    policy = models.JSONField(default=dict)
    split = models.JSONField(default=dict)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0)
    manifest = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=500, blank=True)
    zip_sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"export {self.public_id} ({self.format})"


class TrainingJob(models.Model):
    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model"
        DPO = "dpo", "DPO"
        MODPO = "modpo", "MODPO"
        SFT = "sft", "SFT"
        MERGE = "merge", "Merge (soup)"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="training_jobs")
    export = models.ForeignKey(PreferenceExport, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    criterion_key = models.CharField(max_length=64, blank=True)
    weights = models.JSONField(default=dict, blank=True)
    weight_set = models.ForeignKey(
        "annotations.WeightSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_jobs"
    )
    base_model = models.CharField(max_length=500, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    inputs = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="used_by")
    sweep = models.ForeignKey(
        "annotations.Sweep", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    # The run holding the job: a worker claims it with a conditional update, so it never runs twice at once.
    run_token = models.UUIDField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    artifacts_path = models.CharField(max_length=500, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} job {self.public_id}"


class Sweep(models.Model):
    """One launch of many weight vectors: a MODPO job per vector, or a merge (rewarded soup) per vector."""

    class Kind(models.TextChoices):
        MODPO = "modpo", "MODPO per weight vector"
        SOUP = "soup", "Merge per-criterion models (rewarded soups)"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="sweeps")
    export = models.ForeignKey(PreferenceExport, null=True, blank=True, on_delete=models.PROTECT, related_name="sweeps")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    # [{"label": "...", "weights": {criterion_key: w}}] in launch order.
    weight_vectors = models.JSONField(default=list)
    base_model = models.CharField(max_length=500, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or f"{self.kind} sweep {self.public_id}"


class TrainingMetric(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    epoch = models.FloatField(default=0)
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step", "id"]

    def __str__(self) -> str:
        return f"job {self.job_id} step {self.step}"


class ReportSnapshot(models.Model):
    """A computed agreement report, cached by a fingerprint of the ratings and the report's parameters."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="reports")
    fingerprint = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "fingerprint"], name="report_fingerprint_unique")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"report {self.fingerprint[:12]} ({self.status})"
