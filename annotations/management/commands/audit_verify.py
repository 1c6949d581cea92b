"""manage.py audit_verify [--anchor SEQUENCE:HASH] [--print-head]: recompute the audit log's hash chain."""

import re

from django.core.management.base import BaseCommand, CommandError

from annotations.services.audit import audit_chain_head, audit_chain_verify

ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain: exit 0 with the row count if intact; otherwise name the first broken "
        "link (sequence, id, what differs) and exit 1."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--print-head",
            action="store_true",
            help="Print the newest row as SEQUENCE:HASH (to keep outside the database) and exit.",
        )
        parser.add_argument(
            "--anchor",
            default="",
            help="A SEQUENCE:HASH printed earlier by --print-head; the row must still be there with that hash.",
        )

    def handle(self, *args, **options) -> None:
        if options["print_head"]:
            sequence, row_hash = audit_chain_head()
            self.stdout.write(f"{sequence}:{row_hash}")
            return
        anchor = None
        if options["anchor"]:
            match = ANCHOR.match(options["anchor"].strip().lower())
            if match is None:
                raise CommandError("--anchor must be SEQUENCE:HASH, as printed by --print-head.")
            anchor = (int(match[1]), match[2])
        report = audit_chain_verify(anchor=anchor)
        cleared = (
            f" ({report.links_cleared} of them name a user or study deleted since)" if report.links_cleared else ""
        )
        if report.intact:
            self.stdout.write(
                f"Audit chain intact: {report.rows} rows{cleared}, head {report.head_sequence}:{report.head_hash}."
            )
            return
        first, *rest = report.problems
        self.stderr.write(f"Audit chain BROKEN at {first.describe()}")
        for problem in rest:
            self.stderr.write(f"  also: {problem.describe()}")
        raise CommandError(f"{len(report.problems)} problem(s) in {report.rows} audit rows.", returncode=1)
