"""Launching a sweep: weight vectors from a grid, weight sets and typed rows; errors that name the field; all or
nothing; an audit row; the jobs it queues; cancel-all; the points and the front it reads back."""

import pytest
from django.core.exceptions import ValidationError

from annotations.models import AuditEvent, JobStatus, Sweep, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.sweeps import (
    primary_criterion,
    sweep_cancel,
    sweep_launch,
    sweep_overview,
    sweep_vectors_resolve,
    weight_rows_parse,
)

pytestmark = pytest.mark.django_db


def finished_job(study, export, kind, criterion, tmp_path, metrics=None):
    """A succeeded job whose artifacts folder holds a loadable copy of nothing but a config (enough for launch)."""
    folder = tmp_path / f"{kind}-{criterion}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    return TrainingJob.objects.create(
        study=study,
        export=export,
        kind=kind,
        criterion_key=criterion,
        status=JobStatus.SUCCEEDED,
        artifacts_path=str(folder),
        result={"status": "completed", "metrics": metrics or {}},
    )


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


def test_a_grid_gives_every_weighting_with_titles_in_labels(study):
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["safety", "empathy"], step=0.5)
    assert [v["weights"] for v in vectors] == [
        {"empathy": 1.0, "safety": 0.0},
        {"empathy": 0.5, "safety": 0.5},
        {"empathy": 0.0, "safety": 1.0},
    ]
    assert vectors[1]["label"] == "Empathy 0.5 · Safety 0.5"


def test_typed_rows_and_weight_sets_join_the_grid_with_zeros_filled(study):
    weight_set = WeightSet.objects.create(
        study=study, name="survey mean", weights={"empathy": 0.2, "safety": 0.8}, method="manual"
    )
    vectors = sweep_vectors_resolve(
        study=study,
        weight_sets=[weight_set],
        rows=weight_rows_parse("empathy=0.7, safety=0.3\n\nactive_listening=1"),
    )
    assert [v["label"] for v in vectors] == ["survey mean", "Empathy 0.7 · Safety 0.3", "Active listening only"]
    assert vectors[0]["weight_set"] == weight_set.pk
    assert vectors[2]["weights"] == {"empathy": 0.0, "safety": 0.0, "active_listening": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"grid_criteria": ["empathy", "safety"], "step": 0.3}, "step", "divide 1"),
        ({"grid_criteria": ["empathy"], "step": 0.5}, "criteria", "two criteria"),
        ({"grid_criteria": ["empathy", "nonsense"], "step": 0.5}, "criteria", "nonsense"),
        ({"rows": [{"empathyy": 1.0}]}, "vectors", "Line 1: not a criterion of this study: empathyy"),
        ({"rows": [{"empathy": 0.7, "safety": 0.4}]}, "vectors", "sum to 1.1, not 1"),
        ({"rows": [{"empathy": 1.5, "safety": -0.5}]}, "vectors", "non-negative"),
        ({"rows": [{"empathy": 1.0}, {"empathy": 1.0}]}, "vectors", "given twice"),
        ({}, "vectors", "Give a grid"),
    ],
)
def test_bad_vectors_are_refused_naming_the_field(study, kwargs, field, words):
    with pytest.raises(ValidationError) as excinfo:
        sweep_vectors_resolve(study=study, **kwargs)
    assert words in " ".join(errors_of(excinfo)[field])


def test_a_typed_row_that_is_not_name_equals_number_names_its_line():
    with pytest.raises(ValidationError) as excinfo:
        weight_rows_parse("empathy=0.5, safety=0.5\nempathy 0.5")
    assert "Line 2" in errors_of(excinfo)["vectors"][0]


def test_the_primary_criterion_is_the_first_weighted_one():
    assert primary_criterion({"empathy": 0.3, "safety": 0.7}) == "empathy"
    assert primary_criterion({"empathy": 0.0, "safety": 1.0}) == "safety"


def test_a_modpo_sweep_queues_one_job_per_vector_with_the_reward_models_it_needs(
    study, export, tiny_assets, researcher, tmp_path, django_capture_on_commit_callbacks
):
    safety_rm = finished_job(study, export, "reward", "safety", tmp_path)
    empathy_rm = finished_job(study, export, "reward", "empathy", tmp_path)
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["empathy", "safety"], step=0.5)
    with django_capture_on_commit_callbacks() as callbacks:
        sweep = sweep_launch(
            study=study,
            kind="modpo",
            export=export,
            base_model=tiny_assets["base"],
            vectors=vectors,
            name="grid",
            hyperparameters={"max_steps": "3"},
            actor=researcher,
        )
    jobs = list(sweep.jobs.order_by("created_at"))
    assert len(jobs) == 3 and len(callbacks) == 3  # one message per job, sent after commit
    assert [(j.kind, j.criterion_key) for j in jobs] == [
        ("modpo", "empathy"),
        ("modpo", "empathy"),
        ("modpo", "safety"),
    ]
    assert [list(j.inputs.all()) for j in jobs] == [[], [safety_rm], []]
    assert jobs[1].weights == {"empathy": 0.5, "safety": 0.5}
    assert all(j.hyperparameters == {"max_steps": 3} for j in jobs)
    assert [e["role"] for e in sweep.weight_vectors] == ["dpo-baseline", "modpo", "dpo-baseline"]
    assert [e["job"] for e in sweep.weight_vectors] == [str(j.public_id) for j in jobs]
    event = AuditEvent.objects.get(action="sweep.launch")
    assert event.actor_id == researcher.pk and event.data["jobs"] == [str(j.public_id) for j in jobs]
    assert empathy_rm.used_by.count() == 0


def test_a_vector_without_its_reward_model_refuses_the_whole_sweep_and_queues_nothing(
    study, export, tiny_assets, researcher
):
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["empathy", "safety"], step=0.5)
    with pytest.raises(ValidationError) as excinfo:
        sweep_launch(
            study=study, kind="modpo", export=export, base_model=tiny_assets["base"], vectors=vectors, actor=researcher
        )
    message = errors_of(excinfo)["models"][0]
    assert message.startswith("Empathy 0.5 · Safety 0.5: no finished reward model on this export for Safety")
    assert not Sweep.objects.exists() and not TrainingJob.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["sweep.launch", "training_job.launch"]).exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"base_model": "/nowhere/model"}, "base_model"),
        ({"export": None}, "export"),
        ({"kind": "nonsense"}, "kind"),
        ({"hyperparameters": {"max_steps": "many"}}, "max_steps"),
    ],
)
def test_bad_launch_input_names_the_field(study, export, tiny_assets, researcher, change, field):
    arguments = {
        "study": study,
        "kind": "modpo",
        "export": export,
        "base_model": tiny_assets["base"],
        "vectors": sweep_vectors_resolve(study=study, rows=[{"empathy": 1.0}]),
        "actor": researcher,
        **change,
    }
    with pytest.raises(ValidationError) as excinfo:
        sweep_launch(**arguments)
    assert field in errors_of(excinfo)
    assert not Sweep.objects.exists()


def test_a_soup_sweep_merges_the_dpo_models_and_a_one_criterion_vector_is_the_model_itself(
    study, export, tiny_assets, researcher, tmp_path
):
    empathy = finished_job(study, export, "dpo", "empathy", tmp_path)
    safety = finished_job(study, export, "dpo", "safety", tmp_path)
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["empathy", "safety"], step=0.5)
    sweep = sweep_launch(
        study=study,
        kind="soup",
        export=export,
        base_model=tiny_assets["base"],
        vectors=vectors,
        actor=researcher,
        dispatch=False,
    )
    merge = sweep.jobs.get()
    assert merge.kind == "merge" and merge.export == export
    assert merge.weights == {str(empathy.public_id): 0.5, str(safety.public_id): 0.5}
    assert [e["job"] for e in sweep.weight_vectors] == [
        str(empathy.public_id),
        str(merge.public_id),
        str(safety.public_id),
    ]
    assert [e["role"] for e in sweep.weight_vectors] == ["source", "merge", "source"]


def test_the_overview_marks_the_front_and_shows_earlier_dpo_jobs_as_references(
    study, export, tiny_assets, researcher, tmp_path
):
    def figures(empathy, safety):
        return {
            "heldout/empathy/accuracy": empathy,
            "heldout/empathy/n": 8.0,
            "heldout/safety/accuracy": safety,
            "heldout/safety/n": 8.0,
        }

    finished_job(study, export, "reward", "safety", tmp_path)
    reference = finished_job(study, export, "dpo", "empathy", tmp_path, figures(0.9, 0.4))
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["empathy", "safety"], step=0.5)
    sweep = sweep_launch(
        study=study, kind="modpo", export=export, base_model=tiny_assets["base"], vectors=vectors, dispatch=False
    )
    jobs = list(sweep.jobs.order_by("created_at"))
    for job, (e, s) in zip(jobs, [(0.95, 0.45), (0.75, 0.65), (0.6, 0.6)], strict=True):
        TrainingJob.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED, result={"status": "completed", "metrics": figures(e, s)}
        )
    overview = sweep_overview(sweep, None, None)
    assert (overview["x"], overview["y"]) == ("empathy", "safety")
    by_label = {p["label"]: p for p in overview["points"]}
    assert [p["role"] for p in overview["points"]][-1] == "reference"
    assert overview["points"][-1]["job"] == reference
    assert {label for label, p in by_label.items() if p["front"]} == {
        "Empathy only",
        "Empathy 0.5 · Safety 0.5",
    }  # (0.6, 0.6) and the reference (0.9, 0.4) are dominated
    flipped = sweep_overview(sweep, "safety", "empathy")
    assert (flipped["x"], flipped["y"]) == ("safety", "empathy")
    assert sweep_overview(sweep, "empathy", "empathy")["y"] == "safety"  # the same criterion twice: defaults


def test_cancel_all_cancels_every_unfinished_job_and_is_audited(study, export, tiny_assets, researcher, tmp_path):
    finished_job(study, export, "reward", "safety", tmp_path)
    vectors = sweep_vectors_resolve(study=study, grid_criteria=["empathy", "safety"], step=0.5)
    sweep = sweep_launch(
        study=study, kind="modpo", export=export, base_model=tiny_assets["base"], vectors=vectors, dispatch=False
    )
    TrainingJob.objects.filter(pk=sweep.jobs.first().pk).update(status=JobStatus.SUCCEEDED)
    assert sweep_cancel(sweep=sweep, actor=researcher) == 2
    assert sorted(sweep.jobs.values_list("status", flat=True)) == ["cancelled", "cancelled", "succeeded"]
    assert AuditEvent.objects.filter(action="sweep.cancel").count() == 1
    with pytest.raises(ValidationError):
        sweep_cancel(sweep=sweep, actor=researcher)
