import pytest

from annotations.tasks import ping


@pytest.mark.django_db(transaction=True)
def test_a_task_makes_a_round_trip_through_a_real_worker_on_postgresql(celery_worker):
    result = ping.delay("hello").get(timeout=30)
    assert result == {"value": "hello", "database": "postgresql"}
