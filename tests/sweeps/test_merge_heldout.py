"""A merged (rewarded-soup) model is scored on the export's held-out pairs like a DPO policy, with the same keys, so
the job page, the models page and the sweep's front show it; a merge launched without an export takes its sources'."""

import pytest

from annotations.models import JobStatus, TrainingJob
from annotations.services import training_jobs
from annotations.services.sweeps import sweep_launch, sweep_overview, sweep_vectors_resolve
from annotations.services.training_jobs import training_job_execute, training_job_launch
from tests.jobs.conftest import CRITERIA, FAST, make_export
from tests.sweeps.test_sweep_service import finished_job


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_soup_sweeps_merge_ends_with_held_out_figures_per_criterion(
    study, export, tiny_assets, researcher, client, monkeypatch
):
    monkeypatch.setattr(training_jobs, "_dispatch", lambda job_id: None)  # run here, in order, not by a worker
    base = tiny_assets["base"]
    sources = []
    for criterion in ("empathy", "safety"):
        job = training_job_launch(
            study=study, export=export, base_model=base, kind="dpo", criterion=criterion, hyperparameters=FAST
        )
        assert training_job_execute(job_id=job.pk, worker="w") == "succeeded"
        job.refresh_from_db()
        sources.append(job)

    vectors = sweep_vectors_resolve(study=study, rows=[{"empathy": 0.5, "safety": 0.5}])
    sweep = sweep_launch(
        study=study,
        kind="soup",
        export=export,
        base_model=base,
        vectors=vectors,
        hyperparameters={"max_length": FAST["max_length"]},
        actor=researcher,
    )
    merge = sweep.jobs.get()
    assert merge.hyperparameters == {"max_length": FAST["max_length"]}  # scored as its sources were
    assert training_job_execute(job_id=merge.pk, worker="w") == "succeeded"
    merge.refresh_from_db()

    metrics = merge.result["metrics"]
    for criterion in CRITERIA:  # every criterion of the export, as many pairs as the DPO sources were scored on
        assert 0.0 <= metrics[f"heldout/{criterion}/accuracy"] <= 1.0
        assert metrics[f"heldout/{criterion}/n"] == sources[0].result["metrics"][f"heldout/{criterion}/n"] > 0
        assert f"heldout/{criterion}/margin" in metrics
    # The averaged policy is not the base model: its implicit rewards are not all zero.
    assert any(metrics[f"heldout/{criterion}/margin"] != 0 for criterion in CRITERIA)

    point = next(p for p in sweep_overview(sweep, None, None)["points"] if p["role"] == "merge")
    assert point["figures"]["safety"]["n"] == metrics["heldout/safety/n"]
    client.force_login(researcher)
    page = client.get(f"/studies/{study.slug}/jobs/{merge.public_id}/").content.decode()
    assert "a merge trains nothing" not in page and "Mean margin" in page


def test_a_merge_without_an_export_is_scored_on_its_first_sources_and_says_when_they_differ(
    study, export, tiny_assets, researcher, tmp_path
):
    other = make_export(study, tiny_assets["snapshot"])
    first = finished_job(study, export, "dpo", "empathy", tmp_path)
    second = finished_job(study, other, "dpo", "safety", tmp_path)
    merge = training_job_launch(
        study=study,
        kind="merge",
        base_model=tiny_assets["base"],
        inputs=[second, first],
        actor=researcher,
        dispatch=False,
    )
    assert merge.export == export  # the first source in the merge's order
    assert f"test split of export {str(export.public_id)[:8]}" in merge.log
    assert f"{str(second.public_id)[:8]} on {str(other.public_id)[:8]}" in merge.log

    same = finished_job(study, export, "dpo", "safety", tmp_path / "same")
    merge = training_job_launch(
        study=study, kind="merge", base_model=tiny_assets["base"], inputs=[first, same], dispatch=False
    )
    assert (merge.export, merge.log) == (export, "")
    assert TrainingJob.objects.filter(kind="merge", status=JobStatus.QUEUED).count() == 2
