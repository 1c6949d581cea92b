import json

from django.core.management.base import BaseCommand, CommandError

from annotations.models import RubricVersion, Study
from annotations.rubric import snapshot_diff
from annotations.services.rubric_edit import rubric_snapshot, rubric_versions, rubric_versions_ensure


class Command(BaseCommand):
    help = (
        "Print a study's rubric (criteria, scale, rationale settings) as JSON that rubric_edit --from-json "
        "accepts; with --versions, its version history; with --version N, that version and its changes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--versions", action="store_true", help="list every rubric version with what changed")
        group.add_argument(
            "--number", type=int, help="one version (its number) with a word diff against the one before"
        )

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']}.")
        if options["versions"]:
            payload = [
                {
                    "number": v.number,
                    "created_at": v.created_at.isoformat(),
                    "created_by": v.created_by.get_username() if v.created_by else None,
                    "after_open": v.after_open,
                    "changes": v.changes,
                    "note": v.note,
                }
                for v in rubric_versions(study=study)
            ]
        elif options["number"] is not None:
            rubric_versions_ensure(study=study)
            version = RubricVersion.objects.filter(study=study, number=options["number"]).first()
            if version is None:
                raise CommandError(f"--number: the study has no rubric v{options['version']}.")
            previous = RubricVersion.objects.filter(study=study, number__lt=version.number).order_by("-number").first()
            payload = {
                "number": version.number,
                "changes": version.changes,
                "note": version.note,
                "criteria": version.criteria,
                "diff": snapshot_diff(previous.criteria if previous else None, version.criteria),
            }
        else:
            latest = rubric_versions_ensure(study=study)
            payload = {
                "version": latest.number,
                "status": study.status,
                "scale_points": study.scale_points,
                "rationale_mode": study.rationale_mode,
                "rationale_required": study.rationale_required,
                "rationale_min_length": study.rationale_min_length,
                "criteria": [
                    {k: item[k] for k in ("key", "title", "question", "better_when", "worse_when")}
                    for item in rubric_snapshot(study)
                ],
            }
        self.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False))
