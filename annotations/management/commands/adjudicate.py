"""manage.py adjudicate: list a study's disputed items as CSV, or resolve them from a CSV.

  manage.py adjudicate --study SLUG --list [--criterion KEY] [--status unresolved|adjudicated|all] [--out FILE]
  manage.py adjudicate --study SLUG --from-csv FILE --as USERNAME

The CSV read has the columns comparison, criterion, decision (response_1, tie, response_2, or withdraw) and
reason (required except to withdraw); the list's CSV has them too, so a researcher can fill in the list and
read it back. Every row is applied in one transaction: one bad row and nothing is written (the error names the
line and the field). Each decision is audited as made by --as.
"""

from __future__ import annotations

import csv
import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotations.csvsafe import csv_writer
from annotations.models import Comparison, Study
from annotations.permissions import is_admin
from annotations.services.adjudication import (
    DECISIONS,
    STATUSES,
    adjudication_decide,
    adjudication_withdraw,
    disputed_items,
)

COLUMNS = [
    "comparison",
    "criterion",
    "criterion_title",
    "system_1",
    "system_2",
    "votes_response_1",
    "votes_tie",
    "votes_response_2",
    "decision",
    "reason",
    "decided_by",
]


class Command(BaseCommand):
    help = "List a study's disputed items as CSV (--list), or record decisions from a CSV (--from-csv); audited."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--list", action="store_true", help="write the disputed items as CSV")
        action.add_argument("--from-csv", metavar="FILE", help="apply decisions from this CSV")
        parser.add_argument("--criterion", default="", help="with --list: only this criterion key")
        parser.add_argument("--status", default="unresolved", choices=STATUSES, help="with --list")
        parser.add_argument("--out", default="", help="with --list: file to write (default: standard output)")
        parser.add_argument("--as", dest="as_user", default="", help="with --from-csv: the adjudicator's username")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with the slug {options['study']!r}.")
        if options["list"]:
            self._list(study, options)
        else:
            self._apply(study, options)

    def _list(self, study: Study, options: dict) -> None:
        try:
            items = disputed_items(study=study, criterion_key=options["criterion"], status=options["status"])
        except ValidationError as exc:
            raise CommandError(" ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        comparisons = {
            c.pk: c
            for c in Comparison.objects.filter(pk__in={i.comparison_id for i in items}).select_related(
                "response_first__system", "response_second__system"
            )
        }
        out = open(options["out"], "w", newline="", encoding="utf-8") if options["out"] else sys.stdout
        try:
            writer = csv_writer(out)
            writer.writerow(COLUMNS)
            for item in items:
                comparison = comparisons[item.comparison_id]
                adjudication = item.adjudication
                writer.writerow(
                    [
                        item.comparison_id,
                        item.criterion.key,
                        item.criterion.title,
                        comparison.response_first.system.name,
                        comparison.response_second.system.name,
                        item.votes.a,
                        item.votes.tie,
                        item.votes.b,
                        next((k for k, v in DECISIONS.items() if adjudication and v == adjudication.value), ""),
                        adjudication.reason if adjudication else "",
                        adjudication.decided_by.get_username() if adjudication and adjudication.decided_by else "",
                    ]
                )
        finally:
            if out is not sys.stdout:
                out.close()
        self.stderr.write(f"{len(items)} item(s).")

    def _apply(self, study: Study, options: dict) -> None:
        user = get_user_model().objects.filter(username=options["as_user"]).first() if options["as_user"] else None
        if user is None:
            raise CommandError("--as: give the username of the researcher who decides.")
        if not (is_admin(user) or user.has_perm("annotations.manage_study", study)):
            raise CommandError(f"--as: {user.get_username()} is not a researcher of this study.")
        try:
            with open(options["from_csv"], newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            raise CommandError(f"--from-csv: cannot read {options['from_csv']}: {exc.strerror}") from None
        missing = {"comparison", "criterion", "decision"} - set(rows[0] if rows else {})
        if rows and missing:
            raise CommandError(f"{options['from_csv']}: missing column(s) {', '.join(sorted(missing))}.")
        decided = withdrawn = skipped = 0
        # One transaction: a bad row raises out of it and nothing is written.
        with transaction.atomic():
            for line, row in enumerate(rows, start=2):
                decision = (row.get("decision") or "").strip()
                if not decision:
                    skipped += 1  # a listed item left undecided
                    continue
                try:
                    if decision == "withdraw":
                        withdrawn += adjudication_withdraw(
                            study=study,
                            comparison_id=row.get("comparison"),
                            criterion_key=(row.get("criterion") or "").strip(),
                            actor=user,
                            reason=row.get("reason") or "",
                        )
                    else:
                        adjudication_decide(
                            study=study,
                            comparison_id=row.get("comparison"),
                            criterion_key=(row.get("criterion") or "").strip(),
                            decision=decision,
                            reason=row.get("reason") or "",
                            actor=user,
                        )
                        decided += 1
                except ValidationError as exc:
                    problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
                    raise CommandError(f"{options['from_csv']}, line {line}: {problems} Nothing was saved.") from None
        self.stdout.write(
            f"{decided} decision(s) recorded, {withdrawn} withdrawn, {skipped} row(s) without a decision."
        )
