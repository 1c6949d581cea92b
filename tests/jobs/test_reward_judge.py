"""The reward-model judge: a reward model trained here through the worker scores both responses of every
pair; the difference maps onto the scale with a tie band calibrated on the clinicians' ratings."""

import io

import numpy as np
import pytest

from annotations.models import Assignment, JobStatus, Judgment, Rater, Rating
from annotations.services.comparisons import comparisons_build
from annotations.services.importing import import_study_file
from annotations.services.judging import judge_run_create, reward_judge_create
from annotations.services.studies import study_criteria
from annotations.services.training_jobs import training_job_launch
from tests.jobs.conftest import FAST, wait_for, wait_until_finished
from tests.judges.conftest import judge_study_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_reward_model_judge_runs_on_the_gpu_queue_with_a_calibrated_tie_band(
    celery_worker, study, export, tiny_assets, researcher
):
    import_study_file(study=study, stream=io.BytesIO(judge_study_jsonl(6)), filename="s.jsonl", actor=researcher)
    comparisons_build(study=study, actor=researcher)
    comparisons = list(study.comparisons.order_by("id"))
    safety = next(c for c in study_criteria(study) if c.key == "safety")
    # Clinicians' ratings of 10 pairs: 4 ties, 6 preferences -> the judge should say "tie" on 40% of them.
    raters = [Rater.objects.create(kind=Rater.Kind.EXTERNAL, label=f"clin-{i}") for i in range(2)]
    human_values = [0, 0, 1, -1, 1, -1, 0, 1, 0, -1]
    for index, (comparison, value) in enumerate(zip(comparisons[:10], human_values, strict=True)):
        assignment = Assignment.objects.create(
            study=study,
            comparison=comparison,
            rater=raters[index % 2],
            status=Assignment.Status.SUBMITTED,
            purpose=Assignment.Purpose.IMPORTED,
        )
        Rating.objects.create(assignment=assignment, criterion=safety, value=value)

    reward = training_job_launch(
        study=study,
        export=export,
        base_model=tiny_assets["base"],
        kind="reward",
        criterion="safety",
        hyperparameters=FAST,
        actor=researcher,
    )
    wait_until_finished([reward])
    assert reward.status == JobStatus.SUCCEEDED, reward.error

    judge = reward_judge_create(study=study, name="rm-judge", reward_jobs={"safety": reward}, actor=researcher)
    run = judge_run_create(judge=judge, actor=researcher)
    assert run.criterion_keys == ["safety"]
    run = wait_for(
        lambda: type(run).objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(),
        timeout=120,
        what="the reward judge run",
    )
    assert (run.status, run.error) == (JobStatus.SUCCEEDED, "")
    judgments = {j.comparison_id: j for j in Judgment.objects.filter(judge=judge)}
    assert set(judgments) == {c.pk for c in comparisons}
    assert {j.value for j in judgments.values()} <= {-1, 0, 1}
    calibration = run.result["calibration"]["safety"]
    assert calibration["n_human_ratings"] == 10 and calibration["human_shares"][0] == pytest.approx(0.4)
    # Quantile matching: on the pairs the clinicians rated, the judge ties about as often as they do.
    rated_ties = np.mean([judgments[c.pk].value == 0 for c in comparisons[:10]])
    assert abs(rated_ties - 0.4) <= 0.1 + 1e-9  # within one pair in ten
    # The score difference is kept with each judgment, and its sign is the judgment's.
    for judgment in judgments.values():
        if judgment.value:
            assert np.sign(judgment.raw["difference"]) == judgment.value

    # Running again changes nothing.
    before = {pk: j.value for pk, j in judgments.items()}
    again = judge_run_create(judge=judge, actor=researcher)
    wait_for(lambda: type(again).objects.filter(pk=again.pk, status="succeeded").exists(), timeout=120, what="rerun")
    assert {j.comparison_id: j.value for j in Judgment.objects.filter(judge=judge)} == before
