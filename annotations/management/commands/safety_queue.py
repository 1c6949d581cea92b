"""manage.py safety_queue: list a study's flagged pairs with every reason, and act on them.

  manage.py safety_queue --study SLUG [--status open|reviewed|all] [--out FILE]      CSV, one row per reason
  manage.py safety_queue --study SLUG --review COMPARISON [--note TEXT] --as USERNAME
  manage.py safety_queue --study SLUG --reopen COMPARISON --as USERNAME
  manage.py safety_queue --study SLUG --exclude-response RESPONSE [--include] --as USERNAME

Each action is audited as done by --as.
"""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.csvsafe import csv_writer
from annotations.models import SafetyReview, Study
from annotations.permissions import is_admin
from annotations.services.safety import (
    QUEUE_STATUSES,
    response_exports_set,
    safety_pairs_load,
    safety_queue,
    safety_review_set,
)

COLUMNS = [
    "comparison",
    "status",
    "system_1",
    "system_2",
    "rater",
    "rater_kind",
    "reason_kind",
    "reason",
    "span_response",
    "span_note",
    "note",
]


class Command(BaseCommand):
    help = "List the safety queue as CSV (one row per reason), or mark a pair reviewed, or exclude a response."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--status", default="open", choices=QUEUE_STATUSES, help="which pairs to list")
        parser.add_argument("--out", default="", help="file to write the list to (default: standard output)")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--review", type=int, metavar="COMPARISON", help="mark this flagged pair reviewed")
        action.add_argument("--reopen", type=int, metavar="COMPARISON", help="open this pair for review again")
        action.add_argument("--exclude-response", type=int, metavar="RESPONSE", help="exclude it from exports")
        parser.add_argument("--include", action="store_true", help="with --exclude-response: include it again")
        parser.add_argument("--note", default=None, help="with --review: the pair's note")
        parser.add_argument("--as", dest="as_user", default="", help="the researcher acting (for the audit log)")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with the slug {options['study']!r}.")
        if options["review"] is None and options["reopen"] is None and options["exclude_response"] is None:
            self._list(study, options)
            return
        user = get_user_model().objects.filter(username=options["as_user"]).first() if options["as_user"] else None
        if user is None or not (is_admin(user) or user.has_perm("annotations.manage_study", study)):
            raise CommandError("--as: give the username of a researcher of this study.")
        try:
            if options["exclude_response"] is not None:
                response = response_exports_set(
                    study=study,
                    response_id=options["exclude_response"],
                    excluded=not options["include"],
                    actor=user,
                    reason="safety_queue command",
                )
                state = "excluded from" if response.excluded_from_exports else "included in"
                self.stdout.write(f"Response {response.external_id} is {state} new exports.")
            else:
                reviewing = options["review"] is not None
                comparison = options["review"] if reviewing else options["reopen"]
                safety_review_set(
                    study=study,
                    comparison_id=comparison,
                    status=SafetyReview.Status.REVIEWED if reviewing else SafetyReview.Status.OPEN,
                    note=options["note"],
                    actor=user,
                )
                self.stdout.write(f"Comparison {comparison} {'reviewed' if reviewing else 'open for review again'}.")
        except ValidationError as exc:
            raise CommandError(" ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None

    def _list(self, study: Study, options: dict) -> None:
        pairs = safety_pairs_load(comparisons=list(safety_queue(study=study, status=options["status"])))
        out = open(options["out"], "w", newline="", encoding="utf-8") if options["out"] else sys.stdout
        try:
            writer = csv_writer(out)
            writer.writerow(COLUMNS)
            for pair in pairs:
                c = pair.comparison
                head = [c.pk, pair.status, c.response_first.system.name, c.response_second.system.name]
                note = pair.review.note if pair.review else ""
                for r in pair.raters:
                    who = [r.rater, r.rater_kind]
                    if r.both_unacceptable:
                        writer.writerow([*head, *who, "both_unacceptable", r.unacceptable_reason, "", "", note])
                    if r.skip_reason:
                        kind = "safety_skip" if r.skip_is_safety else "skip"
                        writer.writerow([*head, *who, kind, r.skip_reason, "", "", note])
                    for s in r.spans:
                        writer.writerow([*head, *who, f"span:{s['label']}", s["quote"], s["response"], s["note"], note])
        finally:
            if out is not sys.stdout:
                out.close()
        self.stderr.write(f"{len(pairs)} flagged pair(s).")
