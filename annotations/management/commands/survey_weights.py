import json
import uuid

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.models.survey import Survey
from annotations.services.surveys import weight_set_derive
from annotations.stats.survey import METHODS
from annotations.views.common import error_dict


class Command(BaseCommand):
    help = (
        "Derive a named weight set from a patient preference survey (docs/surveys.md) and print it as JSON. "
        "The weight set can then be chosen for a MODPO, merge or sweep job."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--survey", required=True, help="the survey's id (its UUID, or its number)")
        parser.add_argument("--method", required=True, choices=METHODS)
        parser.add_argument("--name", required=True, help="the weight set's name, unique in the study")
        parser.add_argument("--safety-min", type=float, default=None, help="minimum weight of 'safety' (0 to 1)")
        parser.add_argument("--segment", default="", help="QUESTION=ANSWER: only respondents who gave that answer")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']!r}.")
        survey_id = options["survey"]
        try:
            survey = Survey.objects.filter(study=study, public_id=uuid.UUID(survey_id)).first()
        except ValueError:
            survey = Survey.objects.filter(study=study, pk=int(survey_id)).first() if survey_id.isdigit() else None
        if survey is None:
            raise CommandError(f"No survey {survey_id!r} in study {study.slug!r}.")
        question, _, answer = options["segment"].partition("=")
        if options["segment"] and not answer:
            raise CommandError("--segment takes QUESTION=ANSWER.")
        try:
            weight_set = weight_set_derive(
                survey=survey,
                actor=None,
                name=options["name"],
                method=options["method"],
                segment_question=question,
                segment_answer=answer,
                safety_minimum=options["safety_min"],
            )
        except ValidationError as exc:
            raise CommandError(json.dumps(error_dict(exc))) from None
        self.stdout.write(
            json.dumps(
                {
                    "id": weight_set.pk,
                    "name": weight_set.name,
                    "method": weight_set.method,
                    "weights": weight_set.weights,
                    "derivation": weight_set.derivation,
                },
                indent=2,
            )
        )
