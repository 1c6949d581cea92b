"""Celery tasks: thin wrappers that fetch by id and call a service. Job state lives in the database."""

from celery import shared_task


@shared_task(name="annotations.tasks.ping", ignore_result=False)
def ping(value: str) -> dict[str, str]:
    """A round trip through the broker and a worker: echoes the value with the worker's database vendor."""
    from django.db import connection

    return {"value": value, "database": connection.vendor}
