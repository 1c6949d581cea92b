"""Patient preference surveys: create, open and close them (researchers), take responses (the public link),
and derive named weight sets from the responses.

A respondent's form carries a one-time submission key, signed and tied to the survey; the unique constraint
on (survey, submission_key) makes a double submit or a replay store nothing twice. A response is validated in
full before anything is written, so nothing partial is stored.
"""

import hashlib
import hmac
import re
import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotations.models import Study
from annotations.models.survey import Survey, SurveyResponse, WeightSet
from annotations.services.audit import audit_record
from annotations.services.studies import study_criteria
from annotations.stats.survey import (
    IMPORTANCE_MAX,
    IMPORTANCE_MIN,
    METHODS,
    SurveyAnswers,
    WeightDerivationError,
    breakdown,
    derive_weights,
    mean_importance,
    persona_text,
    top_priority_distribution,
)

FREE_TEXT_MAX_CHARS = 2000
QUESTIONS_MAX = 20
OPTIONS_MAX = 30
LABEL_MAX_CHARS = 300
QUESTION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SUBMISSION_SALT = "annotations.survey.submission"
# A form left open longer than this must be reloaded (the key is then refused and a fresh one issued).
SUBMISSION_MAX_AGE_SECONDS = 24 * 3600
CLOSED_MESSAGE = "This survey is closed and no longer takes answers. Thank you for your interest."


def survey_criteria(study: Study) -> list:
    """The criteria a survey asks about: the study's, in its order, without the overall judgement (how much
    "overall" matters is not a question)."""
    return [c for c in study_criteria(study) if not c.is_overall]


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def survey_questions_validate(questions: Any) -> list[dict[str, Any]]:
    """The researcher's extra questions in their stored shape; ValidationError names what is wrong."""
    if not isinstance(questions, list):
        raise ValidationError({"questions": ["Questions must be a list."]})
    if len(questions) > QUESTIONS_MAX:
        raise ValidationError({"questions": [f"At most {QUESTIONS_MAX} questions."]})
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, question in enumerate(questions, start=1):
        where = f"Question {number}"
        if not isinstance(question, dict) or set(question) - {"key", "label", "kind", "options", "required"}:
            raise ValidationError({"questions": [f"{where}: expected key, label, kind, options and required only."]})
        key = question.get("key")
        label = question.get("label")
        kind = question.get("kind")
        options = question.get("options", [])
        required = question.get("required", False)
        if not isinstance(key, str) or not QUESTION_KEY.match(key):
            raise ValidationError({"questions": [f"{where}: key must be lowercase letters, digits and _."]})
        if key in seen:
            raise ValidationError({"questions": [f"{where}: the key {key!r} is used twice."]})
        seen.add(key)
        if not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX_CHARS:
            raise ValidationError({"questions": [f"{where}: give a label of at most {LABEL_MAX_CHARS} characters."]})
        if kind not in ("choice", "text"):
            raise ValidationError({"questions": [f"{where}: kind must be 'choice' or 'text'."]})
        if not isinstance(required, bool):
            raise ValidationError({"questions": [f"{where}: required must be true or false."]})
        if kind == "choice":
            if (
                not isinstance(options, list)
                or not 2 <= len(options) <= OPTIONS_MAX
                or not all(isinstance(o, str) and o.strip() and len(o) <= LABEL_MAX_CHARS for o in options)
                or len(set(options)) != len(options)
            ):
                raise ValidationError(
                    {"questions": [f"{where}: a choice question needs 2 to {OPTIONS_MAX} distinct options."]}
                )
        elif options:
            raise ValidationError({"questions": [f"{where}: a text question has no options."]})
        cleaned.append(
            {
                "key": key,
                "label": label.strip(),
                "kind": kind,
                "options": list(options) if kind == "choice" else [],
                "required": required,
            }
        )
    return cleaned


@transaction.atomic
def survey_create(
    *,
    study: Study,
    actor: AbstractBaseUser | None,
    title: str,
    consent_text: str,
    introduction: str = "",
    questions: list[dict[str, Any]] | None = None,
    ask_ranking: bool = False,
    access_code: str = "",
) -> Survey:
    """A draft survey of the study. The access code, if any, is kept only as its SHA-256."""
    if len(survey_criteria(study)) < 2:
        raise ValidationError({"__all__": ["The study needs at least two criteria to survey."]})
    survey = Survey(
        study=study,
        title=title.strip(),
        consent_text=consent_text.strip(),
        introduction=introduction.strip(),
        questions=survey_questions_validate(questions or []),
        ask_ranking=ask_ranking,
        access_code_hash=_code_hash(access_code) if access_code else "",
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    survey.full_clean(exclude=["created_by"])
    survey.save()
    audit_record(
        actor=actor,
        action="survey.create",
        study=study,
        obj=survey,
        data={"title": survey.title, "questions": [q["key"] for q in survey.questions], "ranking": ask_ranking},
    )
    return survey


@transaction.atomic
def survey_open(*, survey: Survey, actor: AbstractBaseUser | None) -> Survey:
    survey = Survey.objects.select_for_update().get(pk=survey.pk)
    if survey.status == Survey.Status.OPEN:
        return survey
    survey.status = Survey.Status.OPEN
    survey.opened_at = timezone.now()
    survey.closed_at = None
    survey.save(update_fields=["status", "opened_at", "closed_at"])
    audit_record(actor=actor, action="survey.open", study=survey.study, obj=survey)
    return survey


@transaction.atomic
def survey_close(*, survey: Survey, actor: AbstractBaseUser | None) -> Survey:
    survey = Survey.objects.select_for_update().get(pk=survey.pk)
    if survey.status == Survey.Status.CLOSED:
        return survey
    survey.status = Survey.Status.CLOSED
    survey.closed_at = timezone.now()
    survey.save(update_fields=["status", "closed_at"])
    audit_record(
        actor=actor, action="survey.close", study=survey.study, obj=survey, data={"responses": survey.responses.count()}
    )
    return survey


def survey_submission_key_issue(survey: Survey) -> str:
    """A one-time key for one blank form of this survey (signed, so it cannot be made up or moved to another)."""
    return signing.dumps({"survey": str(survey.public_id), "nonce": secrets.token_hex(16)}, salt=SUBMISSION_SALT)


def _submission_nonce(survey: Survey, key: str) -> str:
    try:
        payload = signing.loads(key, salt=SUBMISSION_SALT, max_age=SUBMISSION_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise ValidationError({"__all__": ["This form is too old; reload the page to answer."]}) from None
    except signing.BadSignature:
        raise ValidationError({"__all__": ["This form is not valid; reload the page to answer."]}) from None
    if not isinstance(payload, dict) or payload.get("survey") != str(survey.public_id):
        raise ValidationError({"__all__": ["This form belongs to another survey; reload the page to answer."]})
    return str(payload["nonce"])


def survey_form_parse(survey: Survey, fields: dict[str, list[str]]) -> dict[str, Any]:
    """The public form's fields (name -> values) in survey_response_submit's terms. Any field the survey did
    not ask for, or given twice, is refused."""
    criteria = [c.key for c in survey_criteria(survey.study)]
    allowed = {"csrfmiddlewaretoken", "submission_key", "consent", "top_priority", "access_code"}
    allowed |= {f"importance_{key}" for key in criteria}
    allowed |= {f"answer_{q['key']}" for q in survey.questions}
    if survey.ask_ranking:
        allowed |= {f"rank_{key}" for key in criteria}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValidationError({"__all__": [f"Unexpected fields: {', '.join(unknown)[:200]}."]})
    repeated = sorted(name for name, values in fields.items() if len(values) != 1)
    if repeated:
        raise ValidationError({"__all__": [f"Fields given more than once: {', '.join(repeated)}."]})
    one = {name: values[0] for name, values in fields.items()}
    importance: dict[str, Any] = {key: one[f"importance_{key}"] for key in criteria if f"importance_{key}" in one}
    ranking: list[str] = []
    if survey.ask_ranking:
        positions = {key: one.get(f"rank_{key}", "") for key in criteria}
        try:
            ranking = sorted(criteria, key=lambda key: int(positions[key]))
            if sorted(int(p) for p in positions.values()) != list(range(1, len(criteria) + 1)):
                raise ValueError
        except ValueError:
            raise ValidationError(
                {"ranking": [f"Give each quality a different place from 1 to {len(criteria)}."]}
            ) from None
    return {
        "submission_key": one.get("submission_key", ""),
        "consent": one.get("consent") == "yes",
        "importance": importance,
        "top_priority": one.get("top_priority", ""),
        "ranking": ranking,
        "answers": {q["key"]: one[f"answer_{q['key']}"] for q in survey.questions if f"answer_{q['key']}" in one},
        "access_code": one.get("access_code", ""),
    }


class SurveyAlreadyAnswered(ValidationError):
    """This form was submitted before: the first submission is kept and nothing more is stored."""


class SurveyNotOpen(ValidationError):
    """The survey is closed (or not open yet) and takes no answers."""


def survey_response_submit(
    *,
    survey: Survey,
    submission_key: str,
    consent: bool,
    importance: dict[str, Any],
    top_priority: str,
    ranking: list[str] | None = None,
    answers: dict[str, Any] | None = None,
    access_code: str = "",
) -> SurveyResponse:
    """Store one respondent's answers, all validated first: importance 1..5 for every criterion of the study,
    one top priority among them, a ranking that orders all of them (when the survey asks), answers only to
    the survey's questions (options of choice questions, text up to FREE_TEXT_MAX_CHARS). Raises
    ValidationError (SurveyAlreadyAnswered for a replayed form) and stores nothing then."""
    ranking = list(ranking or [])
    answers = dict(answers or {})
    # Read now, not from the caller's copy: the survey may have been closed since the form was loaded.
    current_status = Survey.objects.filter(pk=survey.pk).values_list("status", flat=True).first()
    if current_status != Survey.Status.OPEN:
        closed = current_status == Survey.Status.CLOSED
        raise SurveyNotOpen({"__all__": [CLOSED_MESSAGE if closed else "This survey is not open yet."]})
    nonce = _submission_nonce(survey, submission_key)
    errors: dict[str, list[str]] = {}
    if survey.access_code_hash and not hmac.compare_digest(_code_hash(access_code or ""), survey.access_code_hash):
        errors["access_code"] = ["The access code is not right."]
    if not consent:
        errors["consent"] = ["Please confirm your consent to take part."]
    criteria = [c.key for c in survey_criteria(survey.study)]
    if set(importance) - set(criteria):
        errors["importance"] = ["Answers were given for qualities this survey does not ask about."]
    for key in criteria:
        value = importance.get(key)
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or str(value).strip() != str(number) or not IMPORTANCE_MIN <= number <= IMPORTANCE_MAX:
            errors[f"importance_{key}"] = [f"Choose how important this is, from {IMPORTANCE_MIN} to {IMPORTANCE_MAX}."]
        else:
            importance[key] = number
    if top_priority not in criteria:
        errors["top_priority"] = ["Choose the one quality that matters most to you."]
    if survey.ask_ranking:
        if sorted(ranking) != sorted(criteria) or len(set(ranking)) != len(ranking):
            errors["ranking"] = ["Give each quality a different place."]
    elif ranking:
        errors["ranking"] = ["This survey does not ask for a ranking."]
    questions = {q["key"]: q for q in survey.questions}
    if set(answers) - set(questions):
        errors["answers"] = ["Answers were given to questions this survey does not ask."]
    cleaned_answers: dict[str, str] = {}
    for key, question in questions.items():
        value = answers.get(key, "")
        if not isinstance(value, str):
            errors[f"answer_{key}"] = ["Expected text."]
            continue
        value = value.strip()
        if not value:
            if question["required"]:
                errors[f"answer_{key}"] = ["Please answer this question."]
            continue
        if question["kind"] == "choice" and value not in question["options"]:
            errors[f"answer_{key}"] = ["Choose one of the options given."]
        elif question["kind"] == "text" and len(value) > FREE_TEXT_MAX_CHARS:
            errors[f"answer_{key}"] = [f"Please keep this to {FREE_TEXT_MAX_CHARS} characters or fewer."]
        else:
            cleaned_answers[key] = value
    if errors:
        raise ValidationError(errors)
    response = SurveyResponse(
        survey=survey,
        submission_key=nonce,
        importance={key: importance[key] for key in criteria},
        top_priority=top_priority,
        ranking=ranking,
        answers=cleaned_answers,
    )
    try:
        # A savepoint, so a caller's transaction survives the duplicate and can report it.
        with transaction.atomic():
            response.save()
    except IntegrityError:
        raise SurveyAlreadyAnswered(
            {"__all__": ["We already have your answers from this form; nothing more was stored."]}
        ) from None
    return response


def survey_answers(survey: Survey) -> list[SurveyAnswers]:
    """The survey's responses as the statistics core takes them, oldest first."""
    return [
        SurveyAnswers(importance=r.importance, top_priority=r.top_priority, ranking=r.ranking, answers=r.answers)
        for r in survey.responses.order_by("id")
    ]


def survey_choice_questions(survey: Survey) -> list[dict[str, Any]]:
    return [q for q in survey.questions if q["kind"] == "choice"]


@transaction.atomic
def weight_set_derive(
    *,
    survey: Survey,
    actor: AbstractBaseUser | None,
    name: str,
    method: str,
    segment_question: str = "",
    segment_answer: str = "",
    safety_minimum: float | None = None,
) -> WeightSet:
    """A named weight set of the survey's study, derived from its responses (all, or one segment)."""
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name or len(name) > 100:
        errors["name"] = ["Give the weight set a name of at most 100 characters."]
    elif WeightSet.objects.filter(study=survey.study, name=name).exists():
        errors["name"] = ["The study already has a weight set of that name."]
    if method not in METHODS:
        errors["method"] = [f"Choose one of {', '.join(METHODS)}."]
    if segment_question:
        question = next((q for q in survey_choice_questions(survey) if q["key"] == segment_question), None)
        if question is None:
            errors["segment"] = ["Segments are by a choice question of this survey."]
        elif segment_answer not in question["options"]:
            errors["segment"] = ["Choose one of that question's options."]
    if errors:
        raise ValidationError(errors)
    criteria = [c.key for c in survey_criteria(survey.study)]
    try:
        weights, derivation = derive_weights(
            survey_answers(survey),
            criteria,
            method=method,
            segment_question=segment_question,
            segment_answer=segment_answer,
            safety_minimum=safety_minimum,
        )
    except WeightDerivationError as exc:
        raise ValidationError({"method": [str(exc)]}) from None
    derivation = {"survey": str(survey.public_id), "survey_title": survey.title, **derivation}
    weight_set = WeightSet.objects.create(
        study=survey.study,
        name=name,
        weights=weights,
        method=method,
        derivation=derivation,
        survey=survey,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(
        actor=actor,
        action="weight_set.derive",
        study=survey.study,
        obj=weight_set,
        data={"name": name, "method": method, "weights": weights},
    )
    return weight_set


def survey_questions_from_text(text: str) -> list[dict[str, Any]]:
    """The researcher form's questions, one a line: `key | label | choice | option; option | required` or
    `key | label | text | | optional`; validated as survey_questions_validate does."""
    questions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != 5:
            raise ValidationError({"questions": [f"Line {number}: expected key | label | kind | options | required."]})
        key, label, kind, options, required = parts
        if required not in ("required", "optional"):
            raise ValidationError({"questions": [f"Line {number}: the last part is 'required' or 'optional'."]})
        questions.append(
            {
                "key": key,
                "label": label,
                "kind": kind,
                "options": [o.strip() for o in options.split(";") if o.strip()],
                "required": required == "required",
            }
        )
    return survey_questions_validate(questions)


def survey_responses_csv_rows(survey: Survey) -> list[list[Any]]:
    """The survey's responses as CSV rows (header first): one row per respondent, no identifiers."""
    criteria = [c.key for c in survey_criteria(survey.study)]
    header = ["response", "submitted_at", *[f"importance_{key}" for key in criteria], "top_priority"]
    if survey.ask_ranking:
        header.append("ranking")
    header += [f"answer_{q['key']}" for q in survey.questions]
    rows: list[list[Any]] = [header]
    for number, response in enumerate(survey.responses.order_by("id"), start=1):
        row: list[Any] = [number, response.created_at.isoformat()]
        row += [response.importance.get(key, "") for key in criteria]
        row.append(response.top_priority)
        if survey.ask_ranking:
            row.append(" > ".join(response.ranking))
        row += [response.answers.get(q["key"], "") for q in survey.questions]
        rows.append(row)
    return rows


def survey_results(survey: Survey) -> dict[str, Any]:
    """The figures of the results page and the API: mean importance with intervals, top priorities,
    breakdowns by every choice question."""
    criteria = survey_criteria(survey.study)
    keys = [c.key for c in criteria]
    answers = survey_answers(survey)
    return {
        "respondents": len(answers),
        "criteria": [{"key": c.key, "title": c.title} for c in criteria],
        "importance": mean_importance(answers, keys),
        "top_priority": top_priority_distribution(answers, keys),
        "breakdowns": [
            {
                "question": q["key"],
                "label": q["label"],
                "groups": breakdown(answers, keys, question=q["key"], options=q["options"]),
            }
            for q in survey_choice_questions(survey)
        ],
    }


def survey_persona_texts(survey: Survey) -> list[dict[str, Any]]:
    """One patient persona text per respondent, for persona-conditioned judges (choice answers only)."""
    titles = {c.key: c.title for c in survey_criteria(survey.study)}
    labels = {q["key"]: q["label"] for q in survey_choice_questions(survey)}
    return [
        {"response": number, "text": persona_text(answers, titles, labels)}
        for number, answers in enumerate(survey_answers(survey), start=1)
    ]
