from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models

from annotations.models import AuditEvent, Study


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    study: Study | None = None,
    obj: models.Model | None = None,
    data: dict[str, Any] | None = None,
    actor_label: str = "",
) -> AuditEvent:
    """Append an audit row. Call inside the transaction of the change, so both commit or neither does."""
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_label=actor_label or (user.get_username() if user else ""),
        action=action,
        study=study,
        object_type=obj._meta.model_name if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        data=data or {},
    )
