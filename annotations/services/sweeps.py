"""Weight sweeps: one launch trains MODPO for each of several weight vectors over the study's criteria (or merges
per-criterion DPO models with each vector's weights: rewarded soups), and the sweep's reads place every model on
the held-out clinician pairs with the Pareto front marked.

The jobs are ordinary training jobs (annotations/services/training_jobs.py launches, runs and cancels them); the
sweep only groups them (TrainingJob.sweep) and remembers which vector each one trains. Launching is all or nothing:
one vector that cannot start refuses the whole sweep, and no job is queued.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import JobStatus, PreferenceExport, Study, Sweep, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.audit import audit_record
from annotations.services.studies import study_criteria
from annotations.services.training_jobs import (
    FINISHED,
    training_job_cancel,
    training_job_launch,
    training_job_progress,
    training_options_parse,
)
from annotations.stats.pareto import pareto_front, simplex_grid
from annotations.training.spec import heldout_figures

MAX_VECTORS = 32
WEIGHT_SUM_TOLERANCE = 1e-6
DEFAULT_AXES = ("empathy", "safety")  # the research's trade-off
MERGE_SCORING_OPTIONS = ("max_length", "beta", "batch_size", "precision", "seed")


# ---- weight vectors -----------------------------------------------------------------------------


def weight_rows_parse(text: str) -> list[dict[str, float]]:
    """Typed vectors, one per line: `empathy=0.7, safety=0.3`. Raises ValidationError on field "vectors",
    naming the line."""
    vectors = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        weights: dict[str, float] = {}
        for item in (part.strip() for part in re.split(r"[,;]", line)):
            if not item:
                continue
            key, sep, value = item.partition("=")
            try:
                if not sep:
                    raise ValueError(item)
                number_value = float(value)
            except ValueError:
                raise ValidationError(
                    {"vectors": [f"Line {number}: write each weight as criterion=number, e.g. empathy=0.7."]}
                ) from None
            weights[key.strip()] = number_value
        vectors.append(weights)
    return vectors


def _vector_label(weights: dict[str, float], titles: dict[str, str]) -> str:
    shown = [(titles.get(key, key), value) for key, value in weights.items() if value > 0]
    if len(shown) == 1:
        return f"{shown[0][0]} only"
    return " · ".join(f"{title} {value:g}" for title, value in shown)


def sweep_vectors_resolve(
    *,
    study: Study,
    grid_criteria: list[str] | None = None,
    step: float | None = None,
    weight_sets: list[WeightSet] | None = None,
    rows: list[dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """The sweep's weight vectors, [{"label", "weights", "weight_set"?}], from a grid over `grid_criteria` with
    `step`, the study's weight sets, and typed rows (any mix). Every vector has a weight for every criterion any
    vector weighs (0 where it gives none). Raises ValidationError naming the field: criteria, step, weight_sets or
    vectors."""
    criteria = study_criteria(study)
    titles = {criterion.key: criterion.title for criterion in criteria}
    order = [criterion.key for criterion in criteria]
    vectors: list[dict[str, Any]] = []
    if grid_criteria:
        unknown = [key for key in grid_criteria if key not in titles]
        if unknown:
            raise ValidationError({"criteria": [f"Not a criterion of this study: {', '.join(unknown)}."]})
        if step is None:
            raise ValidationError({"step": ["Give the grid's step, e.g. 0.25."]})
        try:
            grid = simplex_grid([key for key in order if key in grid_criteria], step)
        except ValueError as exc:
            field = "criteria" if "criteri" in str(exc) else "step"
            raise ValidationError({field: [str(exc).capitalize() + "."]}) from None
        vectors += [{"label": _vector_label(weights, titles), "weights": weights} for weights in grid]
    elif step is not None and not (weight_sets or rows):
        raise ValidationError({"criteria": ["Choose at least two criteria for the grid."]})
    for weight_set in weight_sets or []:
        if weight_set.study_id != study.pk:
            raise ValidationError({"weight_sets": ["That weight set belongs to another study."]})
        vectors.append({"label": weight_set.name, "weights": dict(weight_set.weights), "weight_set": weight_set.pk})
    for number, weights in enumerate(rows or [], start=1):
        unknown = [key for key in weights if key not in titles]
        if unknown:
            raise ValidationError(
                {
                    "vectors": [
                        f"Line {number}: not a criterion of this study: {', '.join(unknown)} "
                        f"(the criteria are {', '.join(order)})."
                    ]
                }
            )
        vectors.append({"label": _vector_label(weights, titles), "weights": dict(weights)})
    if not vectors:
        raise ValidationError({"vectors": ["Give a grid, weight sets or typed weight vectors to sweep over."]})
    if len(vectors) > MAX_VECTORS:
        raise ValidationError({"vectors": [f"{len(vectors)} weight vectors; a sweep takes at most {MAX_VECTORS}."]})
    for vector in vectors:
        weights = vector["weights"]
        field = "weight_sets" if "weight_set" in vector else "vectors"
        if any(not isinstance(w, int | float) or not math.isfinite(w) or w < 0 for w in weights.values()):
            raise ValidationError({field: [f"{vector['label'] or 'A vector'}: weights must be non-negative numbers."]})
        total = sum(weights.values())
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValidationError({field: [f"{vector['label'] or 'A vector'}: the weights sum to {total:g}, not 1."]})
    swept = [key for key in order if any(vector["weights"].get(key, 0) > 0 for vector in vectors)]
    if grid_criteria:
        swept = [key for key in order if key in grid_criteria or key in swept]
    seen = set()
    for vector in vectors:
        vector["weights"] = {key: float(vector["weights"].get(key, 0.0)) for key in swept}
        signature = tuple(vector["weights"].values())
        if signature in seen:
            raise ValidationError({"vectors": [f"{vector['label']}: this weight vector is given twice."]})
        seen.add(signature)
    return vectors


def primary_criterion(weights: dict[str, float]) -> str:
    """MODPO's primary objective for a vector: the first criterion (in the study's order) with a positive weight,
    as in the MODPO paper, which keeps one objective primary across the sweep and brings the others in through
    their reward models. A two-criterion grid then needs a reward model for the second criterion only."""
    return next(key for key, value in weights.items() if value > 0)


# ---- launch -------------------------------------------------------------------------------------


def _latest_succeeded(*, study: Study, export: PreferenceExport, kind: str) -> dict[str, TrainingJob]:
    """The latest succeeded job of `kind` per criterion trained on `export`."""
    found: dict[str, TrainingJob] = {}
    for job in TrainingJob.objects.filter(study=study, export=export, kind=kind, status=JobStatus.SUCCEEDED).order_by(
        "-created_at"
    ):
        found.setdefault(job.criterion_key, job)
    return found


def sweep_launch(
    *,
    study: Study,
    kind: str,
    export: PreferenceExport | None,
    base_model: str,
    vectors: list[dict[str, Any]],
    name: str = "",
    hyperparameters: dict[str, Any] | None = None,
    models: dict[str, TrainingJob] | None = None,
    actor: AbstractBaseUser | None = None,
    dispatch: bool = True,
) -> Sweep:
    """Validate and queue a sweep: for kind "modpo", one MODPO job per vector (primary criterion: its first weighted
    criterion; a reward model for each other weighted criterion); for kind "soup", one merge job per vector of the
    per-criterion DPO models, weighted by the vector (a vector on one criterion is that criterion's DPO model
    itself, nothing to merge).

    `vectors` come from sweep_vectors_resolve. `models` maps a criterion to the finished job to use for it (reward
    models for MODPO, DPO models for soups); a criterion not given takes the latest succeeded one of that kind
    trained on `export`. Every job's messages go out after commit; any vector that cannot start refuses the sweep
    with a ValidationError naming the field (and the vector)."""
    errors: dict[str, str] = {}
    if kind not in Sweep.Kind.values:
        raise ValidationError({"kind": [f"Choose one of: {', '.join(Sweep.Kind.values)}."]})
    if export is None:
        errors["export"] = "Choose the export snapshot to train and evaluate on."
    elif export.study_id != study.pk:
        errors["export"] = "That export belongs to another study."
    elif export.status != JobStatus.SUCCEEDED or not export.path:
        errors["export"] = "That export is not finished."
    if not vectors:
        errors["vectors"] = "Give at least one weight vector."
    name = (name or "").strip()
    if len(name) > 200:
        errors["name"] = "At most 200 characters."
    if errors:
        raise ValidationError({field: [message] for field, message in errors.items()})
    assert export is not None
    hyperparameters = training_options_parse(hyperparameters or {})  # refused once, not once per vector
    titles = {criterion.key: criterion.title for criterion in study_criteria(study)}
    chosen = dict(models or {})
    for criterion, job in chosen.items():
        if job.study_id != study.pk:
            raise ValidationError({"models": ["Every chosen model must be a job of this study."]})
        wanted = TrainingJob.Kind.REWARD if kind == Sweep.Kind.MODPO else TrainingJob.Kind.DPO
        if job.kind != wanted or job.criterion_key != criterion:
            raise ValidationError(
                {"models": [f"For {titles.get(criterion, criterion)}, choose a {wanted.label} job on that criterion."]}
            )
    available = _latest_succeeded(
        study=study,
        export=export,
        kind=TrainingJob.Kind.REWARD if kind == Sweep.Kind.MODPO else TrainingJob.Kind.DPO,
    )
    per_criterion = {**available, **chosen}
    weight_sets = {ws.pk: ws for ws in WeightSet.objects.filter(study=study)}

    with transaction.atomic():
        sweep = Sweep.objects.create(
            study=study,
            export=export,
            kind=kind,
            name=name,
            weight_vectors=[],
            base_model=base_model,
            hyperparameters=hyperparameters,
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        launched = []
        for vector in vectors:
            entry = {"label": vector["label"], "weights": vector["weights"]}
            if vector.get("weight_set"):
                entry["weight_set"] = vector["weight_set"]
            try:
                job = _launch_vector(
                    study=study,
                    kind=kind,
                    export=export,
                    base_model=base_model,
                    vector=vector,
                    hyperparameters=hyperparameters,
                    per_criterion=per_criterion,
                    titles=titles,
                    weight_set=weight_sets.get(vector.get("weight_set")),
                    actor=actor,
                    dispatch=dispatch,
                )
            except ValidationError as exc:
                # Rolled back with the sweep: nothing is queued. Keep the field names; say which vector.
                raise ValidationError(
                    {
                        field: [f"{vector['label']}: {message}" for message in messages]
                        for field, messages in _message_dict(exc).items()
                    }
                ) from None
            if job is None:
                entry["job"] = str(per_criterion[_single_criterion(vector["weights"])].public_id)
                entry["role"] = "source"
            else:
                TrainingJob.objects.filter(pk=job.pk).update(sweep=sweep)
                entry["job"] = str(job.public_id)
                entry["role"] = _role(kind, vector["weights"])
                launched.append(job)
            sweep.weight_vectors.append(entry)
        sweep.save(update_fields=["weight_vectors"])
        audit_record(
            actor=actor,
            action="sweep.launch",
            study=study,
            obj=sweep,
            data={
                "kind": kind,
                "export": str(export.public_id),
                "vectors": [entry["weights"] for entry in sweep.weight_vectors],
                "jobs": [str(job.public_id) for job in launched],
            },
        )
    return sweep


def _message_dict(exc: ValidationError) -> dict[str, list[str]]:
    return exc.message_dict if hasattr(exc, "error_dict") else {"vectors": exc.messages}


def _single_criterion(weights: dict[str, float]) -> str:
    return next(key for key, value in weights.items() if value > 0)


def _role(kind: str, weights: dict[str, float]) -> str:
    nonzero = [value for value in weights.values() if value > 0]
    if len(nonzero) == 1:
        return "dpo-baseline" if kind == Sweep.Kind.MODPO else "source"
    return "modpo" if kind == Sweep.Kind.MODPO else "merge"


def _launch_vector(
    *,
    study: Study,
    kind: str,
    export: PreferenceExport,
    base_model: str,
    vector: dict[str, Any],
    hyperparameters: dict[str, Any],
    per_criterion: dict[str, TrainingJob],
    titles: dict[str, str],
    weight_set: WeightSet | None,
    actor: AbstractBaseUser | None,
    dispatch: bool,
) -> TrainingJob | None:
    weights = vector["weights"]
    weighted = [key for key, value in weights.items() if value > 0]
    if kind == Sweep.Kind.MODPO:
        primary = primary_criterion(weights)
        others = [key for key in weighted if key != primary]
        missing = [titles.get(key, key) for key in others if key not in per_criterion]
        if missing:
            raise ValidationError(
                {
                    "models": [
                        f"no finished reward model on this export for {', '.join(missing)}: train one first "
                        "(a Reward model job on this export), or choose one."
                    ]
                }
            )
        return training_job_launch(
            study=study,
            kind=TrainingJob.Kind.MODPO,
            base_model=base_model,
            export=export,
            criterion=primary,
            # A weight set's own weights may name criteria outside the sweep's; the job takes the set itself.
            weights=None if weight_set is not None else weights,
            weight_set=weight_set,
            hyperparameters=hyperparameters,
            inputs=[per_criterion[key] for key in others],
            actor=actor,
            dispatch=dispatch,
        )
    missing = [titles.get(key, key) for key in weighted if key not in per_criterion]
    if missing:
        raise ValidationError(
            {
                "models": [
                    f"no finished DPO model on this export for {', '.join(missing)}: train one first "
                    "(a DPO job on this export), or choose one."
                ]
            }
        )
    if len(weighted) == 1:
        return None  # the per-criterion model is this vector's model: nothing to merge
    sources = [per_criterion[key] for key in weighted]
    return training_job_launch(
        study=study,
        kind=TrainingJob.Kind.MERGE,
        base_model=base_model,
        export=export,
        weights={str(job.public_id): weights[job.criterion_key] for job in sources},
        # A merge trains nothing; the sweep's options that say how a policy is scored on the test pairs apply.
        hyperparameters={key: hyperparameters[key] for key in MERGE_SCORING_OPTIONS if key in hyperparameters},
        inputs=sources,
        actor=actor,
        dispatch=dispatch,
    )


# ---- cancel -------------------------------------------------------------------------------------


def sweep_cancel(*, sweep: Sweep, actor: AbstractBaseUser | None) -> int:
    """Cancel every unfinished job of the sweep (queued ones at once, running ones at their next step); returns
    how many were asked. Raises ValidationError when every job has already finished."""
    unfinished = list(sweep.jobs.exclude(status__in=FINISHED).exclude(cancel_requested=True))
    if not unfinished:
        raise ValidationError({"status": ["Every job of this sweep has already finished or been asked to stop."]})
    with transaction.atomic():
        for job in unfinished:
            try:
                training_job_cancel(job=job, actor=actor)
            except ValidationError:
                continue  # it finished meanwhile
        audit_record(
            actor=actor,
            action="sweep.cancel",
            study=sweep.study,
            obj=sweep,
            data={"jobs": [str(job.public_id) for job in unfinished]},
        )
    return len(unfinished)


# ---- reads --------------------------------------------------------------------------------------


def sweeps_for_study(*, study: Study):
    return Sweep.objects.filter(study=study).select_related("export").order_by("-created_at")


def sweep_for_study(*, study: Study, public_id: uuid.UUID | str) -> Sweep | None:
    return Sweep.objects.filter(study=study, public_id=public_id).select_related("export", "study").first()


ROLE_TITLES = {
    "modpo": "MODPO",
    "dpo-baseline": "DPO baseline",  # MODPO with all weight on one criterion is exactly DPO on it
    "merge": "Merge (soup)",
    "source": "Per-criterion DPO",
    "reference": "Earlier DPO job",
}


def sweep_status(sweep: Sweep) -> dict[str, Any]:
    """Counts of the sweep's own jobs by status, and whether all have finished."""
    statuses = list(sweep.jobs.values_list("status", flat=True))
    counts = {status: statuses.count(status) for status in JobStatus.values if status in statuses}
    return {"jobs": len(statuses), "counts": counts, "finished": all(s in FINISHED for s in statuses)}


def sweep_points(sweep: Sweep) -> list[dict[str, Any]]:
    """Every model of the sweep, in launch order, then earlier DPO jobs on the same export as reference points:
    {"label", "weights", "role", "role_title", "job", "figures": {criterion: {accuracy, margin, n}}}.

    A point's figures are its held-out accuracy per criterion on the export's test pairs: the implicit reward of
    its policy (DPO, MODPO, or a merge's averaged policy, each against the base model), none until it finishes."""
    ids = [entry.get("job") for entry in sweep.weight_vectors if entry.get("job")]
    jobs = {str(job.public_id): job for job in TrainingJob.objects.filter(public_id__in=ids, study=sweep.study)}
    points = []
    for entry in sweep.weight_vectors:
        job = jobs.get(entry.get("job") or "")
        role = entry.get("role") or _role(sweep.kind, entry.get("weights") or {})
        points.append(_point(entry["label"], entry.get("weights") or {}, role, job))
    if sweep.export_id is not None:
        references = (
            TrainingJob.objects.filter(
                study=sweep.study, export_id=sweep.export_id, kind=TrainingJob.Kind.DPO, status=JobStatus.SUCCEEDED
            )
            .exclude(public_id__in=ids)
            .order_by("created_at")
        )
        titles = {criterion.key: criterion.title for criterion in study_criteria(sweep.study)}
        for job in references:
            label = f"DPO on {titles.get(job.criterion_key, job.criterion_key)} ({str(job.public_id)[:8]})"
            points.append(_point(label, {}, "reference", job))
    return points


def _point(label: str, weights: dict[str, float], role: str, job: TrainingJob | None) -> dict[str, Any]:
    figures = heldout_figures(((job.result or {}).get("metrics") or {}) if job is not None else {})
    return {
        "label": label,
        "weights": weights,
        "role": role,
        "role_title": ROLE_TITLES.get(role, role),
        "job": job,
        "figures": figures,
    }


def accuracy_of(point: dict[str, Any], criterion: str) -> float | None:
    value = (point["figures"].get(criterion) or {}).get("accuracy")
    return float(value) if value is not None else None


def sweep_mark_front(points: list[dict[str, Any]], criteria: list[str], *, key: str = "front") -> None:
    """Set point[key] to whether the point is on the Pareto front of held-out accuracy over `criteria`."""
    flags = pareto_front([[accuracy_of(point, criterion) for criterion in criteria] for point in points])
    for point, flag in zip(points, flags, strict=True):
        point[key] = flag


def sweep_criteria(sweep: Sweep, points: list[dict[str, Any]]) -> list[str]:
    """The criteria a sweep's models are scored on: the study's order, those with figures or weights."""
    scored = {criterion for point in points for criterion in point["figures"]}
    weighted = {key for entry in sweep.weight_vectors for key in (entry.get("weights") or {})}
    order = [criterion.key for criterion in study_criteria(sweep.study)]
    return [key for key in order if key in scored or key in weighted] + sorted(scored - set(order))


def sweep_axes(criteria: list[str], x: str | None, y: str | None) -> tuple[str, str]:
    """The two criteria on the chart: those asked for when valid, else empathy against safety, else the first two."""
    if x in criteria and y in criteria and x != y:
        return x, y  # type: ignore[return-value]
    defaults = [key for key in DEFAULT_AXES if key in criteria]
    rest = [key for key in criteria if key not in defaults]
    chosen = (defaults + rest + ["", ""])[:2]
    return chosen[0], chosen[1]


def sweep_overview(sweep: Sweep, x: str | None, y: str | None) -> dict[str, Any]:
    """What the page and the API show: the points with both fronts marked, the axes, the criteria."""
    points = sweep_points(sweep)
    criteria = sweep_criteria(sweep, points)
    x_axis, y_axis = sweep_axes(criteria, x, y)
    if x_axis and y_axis:
        sweep_mark_front(points, [x_axis, y_axis])
    else:
        for point in points:
            point["front"] = False
    scored = [key for key in criteria if any(accuracy_of(point, key) is not None for point in points)]
    sweep_mark_front(points, scored, key="front_all")
    return {"points": points, "criteria": criteria, "x": x_axis, "y": y_axis}


def sweep_summary(sweep: Sweep) -> dict[str, Any]:
    return {
        "id": sweep.public_id,
        "name": sweep.name,
        "kind": sweep.kind,
        "export": sweep.export.public_id if sweep.export is not None else None,
        "base_model": sweep.base_model,
        "hyperparameters": sweep.hyperparameters,
        "weight_vectors": sweep.weight_vectors,
        "created_at": sweep.created_at,
        "status": sweep_status(sweep),
    }


def sweep_detail_data(sweep: Sweep, x: str | None = None, y: str | None = None) -> dict[str, Any]:
    overview = sweep_overview(sweep, x, y)
    points = [
        {
            "label": point["label"],
            "role": point["role"],
            "weights": point["weights"],
            "job": point["job"].public_id if point["job"] is not None else None,
            "job_status": point["job"].status if point["job"] is not None else None,
            "heldout": point["figures"],
            "front": point["front"],
            "front_all": point["front_all"],
        }
        for point in overview["points"]
    ]
    return {
        **sweep_summary(sweep),
        "axes": [overview["x"], overview["y"]],
        "criteria": overview["criteria"],
        "points": points,
        "jobs": [training_job_progress(job) for job in sweep.jobs.order_by("created_at")],
    }
