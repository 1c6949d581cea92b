import secrets

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """A person's platform role. Clinician details appear in reports only in aggregate."""

    class Role(models.TextChoices):
        ADMIN = "admin"
        RESEARCHER = "researcher"
        CLINICIAN = "clinician"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=12, choices=Role.choices)
    licence_type = models.CharField(max_length=100, blank=True)
    years_of_practice = models.PositiveSmallIntegerField(null=True, blank=True)
    specialties = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


def _invitation_token() -> str:
    return secrets.token_urlsafe(32)


class Invitation(models.Model):
    token = models.CharField(max_length=64, unique=True, default=_invitation_token)
    email = models.EmailField()
    role = models.CharField(max_length=12, choices=Profile.Role.choices)
    study = models.ForeignKey("annotations.Study", null=True, blank=True, on_delete=models.CASCADE)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    sent_count = models.PositiveIntegerField(default=1)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    quota = models.PositiveIntegerField(null=True, blank=True, help_text="Pairs the clinician is asked to rate.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"invitation for {self.email} ({self.role})"


class ApiToken(models.Model):
    """An API token: only its SHA-256 is stored; the key is shown once, when issued. Expires, can be revoked.

    Sent as `Authorization: Token <key>`; the first characters (`prefix`) name it on the user's page.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"token {self.prefix}… of {self.user_id}"


class PasswordResetLink(models.Model):
    """A one-time link a researcher or admin makes for someone to set a new password (like an invitation).
    Only the token's SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"password reset for {self.user_id}"
