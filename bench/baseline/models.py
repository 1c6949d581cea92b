from django.conf import settings
from django.db import models


class Comparison(models.Model):
    message = models.TextField()
    first = models.TextField()
    second = models.TextField()

    def __str__(self) -> str:
        return f"comparison {self.pk}"


class Item(models.Model):
    """One of a comparison's k places; a rater takes at most one place of a comparison."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE)
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE)
    status = models.CharField(max_length=10, default="open", db_index=True)
    # Which of the comparison's k places (1..k). Claims take every comparison's first place before any second:
    # in plain id order a lone rater would step over the k - 1 places of every comparison they already rated,
    # a growing scan that made the baseline, not the platform, slow at 1 client.
    slot = models.PositiveSmallIntegerField(default=1)
    leased_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "rater"], name="baseline_item_once_per_rater")]
        indexes = [models.Index(fields=["slot", "id"], condition=models.Q(status="open"), name="baseline_item_open")]

    def __str__(self) -> str:
        return f"item {self.pk}"


class Answer(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE)
    criterion = models.SmallIntegerField()
    value = models.SmallIntegerField()

    def __str__(self) -> str:
        return f"answer {self.pk}"
