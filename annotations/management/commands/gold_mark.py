import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Comparison, Study
from annotations.services.gold import GoldKind, comparison_gold_clear, comparison_gold_set, gold_answer_clean


class Command(BaseCommand):
    help = (
        "Mark a comparison as gold or calibration with expected answers per criterion (canonical: negative "
        "favours the comparison's first response) and an explanation shown as feedback; or --unmark it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--comparison", required=True, type=int, help="the comparison's number")
        parser.add_argument("--expected", help='JSON object, every criterion: {"empathy": -1, "overall": 0, ...}')
        parser.add_argument("--kind", choices=[GoldKind.GOLD, GoldKind.CALIBRATION], default=GoldKind.GOLD)
        parser.add_argument("--explanation", default="", help="why these answers (required for calibration)")
        parser.add_argument("--unmark", action="store_true", help="make it a regular pair again")
        parser.add_argument("--user", help="username recorded as the one who marked it")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']}.")
        comparison = Comparison.objects.filter(study=study, pk=options["comparison"]).first()
        if comparison is None:
            raise CommandError(f"--comparison: the study has no comparison {options['comparison']}.")
        actor = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        if options["user"] and actor is None:
            raise CommandError(f"--user: no account {options['user']}.")
        if options["unmark"]:
            comparison_gold_clear(comparison=comparison, actor=actor)
            self.stdout.write(f"Comparison {comparison.pk} is a regular pair again.")
            return
        try:
            expected = json.loads(options["expected"] or "")
        except json.JSONDecodeError:
            raise CommandError("--expected: give a JSON object of criterion key -> value.") from None
        if not isinstance(expected, dict):
            raise CommandError("--expected: give a JSON object of criterion key -> value.")
        try:
            answer = gold_answer_clean(
                study=study, values=expected, explanation=options["explanation"], kind=options["kind"]
            )
            comparison_gold_set(comparison=comparison, answer=answer, actor=actor)
        except ValidationError as exc:
            lines = [f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()]
            raise CommandError("Not marked:\n  " + "\n  ".join(lines)) from None
        self.stdout.write(f"Comparison {comparison.pk} is now a {options['kind']} item.")
