"""manage.py audit_export --format csv|jsonl [--output FILE] [--action PREFIX] [--study SLUG] [--since ISO]."""

import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from annotations.services.accounts import (
    audit_csv_write,
    audit_events_filtered,
    audit_export_record,
    audit_json_lines,
)


class Command(BaseCommand):
    help = "Export the audit log (the export itself is audited)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
        parser.add_argument("--output", help="File to write; standard output by default.")
        parser.add_argument("--action", default="", help="Action prefix, e.g. auth. or membership.")
        parser.add_argument("--study", default="")
        parser.add_argument("--actor", default="")
        parser.add_argument("--since", default="", help="ISO 8601 date-time, inclusive.")
        parser.add_argument("--until", default="", help="ISO 8601 date-time, exclusive.")

    def handle(self, *args, **options) -> None:
        bounds = {}
        for key in ("since", "until"):
            if options[key]:
                bounds[key] = parse_datetime(options[key])
                if bounds[key] is None:
                    raise CommandError(f"--{key} is not an ISO 8601 date-time.")
        events = audit_events_filtered(
            action=options["action"], study_slug=options["study"], actor=options["actor"], **bounds
        )
        filters = {k: options[k] for k in ("action", "study", "actor", "since", "until") if options[k]}
        audit_export_record(actor=None, fmt=options["format"], filters=filters, count=events.count())
        stream = open(options["output"], "w", newline="", encoding="utf-8") if options["output"] else sys.stdout
        try:
            if options["format"] == "csv":
                count = audit_csv_write(events.iterator(chunk_size=2000), stream)
            else:
                count = 0
                for line in audit_json_lines(events.iterator(chunk_size=2000)):
                    stream.write(line)
                    count += 1
        finally:
            if stream is not sys.stdout:
                stream.close()
        self.stderr.write(f"Exported {count} audit events.")
