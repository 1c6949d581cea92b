"""LLM judges against the local OpenAI-compatible server: verdicts in both orders, faults, resumption."""

import socket

import pytest
from django.core.exceptions import ValidationError

from annotations.models import JobStatus, Judge, JudgeRun, Judgment, JudgmentCall
from annotations.services.judging import judge_run_cancel, judge_run_create, judge_run_execute, llm_judge_create
from tests.judges.conftest import build_judge_study

pytestmark = pytest.mark.django_db


def _judge(study, server, model="prefer-longer", **options):
    return llm_judge_create(
        study=study, name=options.pop("name", model), base_url=server.base_url, model_name=model, actor=None, **options
    )


def _run(judge, **options):
    run = judge_run_create(judge=judge, actor=None, dispatch=False, **options)
    judge_run_execute(run_id=run.pk, worker="test")
    run.refresh_from_db()
    return run


def _longer_side(comparison) -> int:
    first, second = len(comparison.response_first.content), len(comparison.response_second.content)
    return -1 if first > second else (1 if second > first else 0)


def test_a_consistent_judge_is_judged_in_both_orders_and_agrees(researcher, server):
    study = build_judge_study(owner=researcher)
    run = _run(_judge(study, server))
    assert run.status == JobStatus.SUCCEEDED
    comparisons = list(study.comparisons.select_related("response_first", "response_second"))
    assert run.done_comparisons == len(comparisons) == 12 and run.failed_comparisons == 0
    # One call per comparison and order, each keeping what came back and the template version.
    calls = JudgmentCall.objects.filter(run=run)
    assert calls.count() == 2 * len(comparisons)
    assert set(calls.values_list("left_is_first", flat=True)) == {True, False}
    assert all(c.raw_output.startswith("{") and c.template_version == 1 and c.prompt_tokens > 0 for c in calls)
    judgments = Judgment.objects.filter(run=run)
    assert judgments.count() == 3 * len(comparisons)
    for comparison in comparisons:
        for judgment in Judgment.objects.filter(comparison=comparison, run=run):
            assert judgment.consistency == Judgment.Consistency.CONSISTENT
            assert judgment.value == _longer_side(comparison) != 0
    assert run.calls == 2 * len(comparisons) and run.prompt_tokens > 0 and run.completion_tokens > 0
    # The judge saw the two responses in both orders, at temperature 0 with a seed.
    stats = server.stats()
    assert stats["last_temperature"] == 0 and stats["last_seed"] == 0


def test_a_position_biased_judge_is_inconsistent_and_counts_as_a_tie(researcher, server):
    study = build_judge_study(owner=researcher)
    run = _run(_judge(study, server, "prefer-first"))
    judgments = Judgment.objects.filter(run=run)
    assert judgments.count() == 36
    assert set(judgments.values_list("consistency", flat=True)) == {Judgment.Consistency.INCONSISTENT}
    assert set(judgments.values_list("value", flat=True)) == {0}


def test_without_swap_each_pair_is_asked_once(researcher, server):
    study = build_judge_study(owner=researcher)
    run = _run(_judge(study, server, "prefer-first", swap=False))
    assert JudgmentCall.objects.filter(run=run).count() == 12
    judgments = Judgment.objects.filter(run=run)
    assert set(judgments.values_list("consistency", flat=True)) == {Judgment.Consistency.SINGLE}
    # Shown first = the comparison's first response: "Response 1 better" is -1 canonically.
    assert set(judgments.values_list("value", flat=True)) == {-1}


def test_per_criterion_mode_asks_once_per_criterion(researcher, server):
    study = build_judge_study(owner=researcher, prompts=2)
    run = _run(_judge(study, server, mode=Judge.Mode.PER_CRITERION))
    assert JudgmentCall.objects.filter(run=run).count() == 6 * 2 * 3
    assert Judgment.objects.filter(run=run, consistency=Judgment.Consistency.CONSISTENT).count() == 6 * 3


def test_five_point_strengths_are_read(researcher, server):
    study = build_judge_study(owner=researcher, scale_points=5)
    run = _run(_judge(study, server, "hash"))
    values = set(Judgment.objects.filter(run=run).values_list("value", flat=True))
    assert values <= {-2, -1, 0, 1, 2} and values & {-2, 2}
    assert run.status == JobStatus.SUCCEEDED


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after(researcher, server):
    study = build_judge_study(owner=researcher, prompts=2)
    server.configure(faults=["429:0.3", "500", "503", "drop", "slow:0.2"])
    run = _run(_judge(study, server, concurrency=1, max_attempts=5))
    assert run.status == JobStatus.SUCCEEDED and run.done_comparisons == 6 and run.failed_comparisons == 0
    stats = server.stats()
    assert stats["by_status"].get("429") == 1 and stats["by_status"].get("500") == 1
    first = JudgmentCall.objects.filter(run=run).order_by("id").first()
    # Four faults before the first answer: the first call took five attempts and waited out Retry-After.
    assert first.attempts == 5 and first.latency_ms >= 300
    assert run.calls == 12 + 4


def test_a_malformed_answer_is_asked_again_then_recorded_as_a_failure_never_a_tie(researcher, server):
    study = build_judge_study(owner=researcher, prompts=1)
    server.configure(faults=["malformed", "malformed-keys"])
    judge = _judge(study, server, concurrency=1, max_attempts=2)
    run = _run(judge)
    failed = JudgmentCall.objects.get(run=run, status=JudgmentCall.Status.FAILED)
    assert failed.attempts == 2 and "malformed answer" in failed.error and "missing key" in failed.error
    assert run.failed_comparisons == 1 and run.done_comparisons == 2
    assert not Judgment.objects.filter(judge=judge, comparison=failed.comparison).exists()
    # Resume: the next run asks only for what failed, and completes it.
    server.configure(reset_stats=True)
    again = _run(judge)
    assert server.stats()["requests_total"] == 1
    assert again.status == JobStatus.SUCCEEDED and again.failed_comparisons == 0
    assert Judgment.objects.filter(judge=judge).count() == 9


def test_a_rerun_changes_nothing(researcher, server):
    study = build_judge_study(owner=researcher, prompts=2)
    judge = _judge(study, server, "hash")
    _run(judge)
    before = sorted(Judgment.objects.filter(judge=judge).values_list("comparison_id", "criterion_id", "value"))
    server.configure(reset_stats=True)
    again = _run(judge)
    assert server.stats()["requests_total"] == 0
    assert again.status == JobStatus.SUCCEEDED and again.done_comparisons == 6 and again.calls == 0
    assert sorted(Judgment.objects.filter(judge=judge).values_list("comparison_id", "criterion_id", "value")) == before


def test_an_unreachable_endpoint_fails_the_run_with_a_clear_message(researcher):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    study = build_judge_study(owner=researcher, prompts=1)
    judge = llm_judge_create(
        study=study, name="gone", base_url=f"http://127.0.0.1:{port}/v1", model_name="m", max_attempts=1, actor=None
    )
    run = _run(judge)
    assert run.status == JobStatus.FAILED
    assert "could not be reached" in run.error and str(port) in run.error


def test_every_call_failing_fails_the_run(researcher, server):
    study = build_judge_study(owner=researcher, prompts=1)
    run = _run(_judge(study, server, "no-such-model"))
    assert run.status == JobStatus.FAILED and "Every call failed" in run.error and "404" in run.error


def test_cancel_stops_after_the_calls_in_flight(researcher, server):
    study = build_judge_study(owner=researcher, prompts=12)
    judge = _judge(study, server, concurrency=1)
    run = judge_run_create(judge=judge, actor=None, dispatch=False)

    def cancel_after_first_batch(progress: JudgeRun) -> None:
        if progress.status == JobStatus.RUNNING and progress.done_comparisons:
            judge_run_cancel(run=progress, actor=None)

    judge_run_execute(run_id=run.pk, worker="test", on_progress=cancel_after_first_batch)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    assert 0 < run.done_comparisons < 36


def test_a_cancelled_queued_run_never_starts(researcher, server):
    study = build_judge_study(owner=researcher, prompts=1)
    run = judge_run_create(judge=_judge(study, server), actor=None, dispatch=False)
    judge_run_cancel(run=run, actor=None)
    assert judge_run_execute(run_id=run.pk, worker="test") == JobStatus.CANCELLED
    assert server.stats()["requests_total"] == 0


def test_one_run_at_a_time_and_only_known_criteria(researcher, server):
    study = build_judge_study(owner=researcher, prompts=1)
    judge = _judge(study, server)
    with pytest.raises(ValidationError, match="Not judged"):
        judge_run_create(judge=judge, criterion_keys=["nope"], actor=None, dispatch=False)
    judge_run_create(judge=judge, actor=None, dispatch=False)
    with pytest.raises(ValidationError, match="already running"):
        judge_run_create(judge=judge, actor=None, dispatch=False)


def test_a_subset_of_criteria_is_judged_and_the_rest_later(researcher, server):
    study = build_judge_study(owner=researcher, prompts=1)
    judge = _judge(study, server)
    _run(judge, criterion_keys=["safety"])
    assert set(Judgment.objects.filter(judge=judge).values_list("criterion__key", flat=True)) == {"safety"}
    _run(judge)
    assert Judgment.objects.filter(judge=judge).count() == 9
