from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import JobStatus, Judge, JudgeRun, Study
from annotations.services.judging import (
    judge_by_name,
    judge_key_source,
    judge_run_create,
    judge_run_execute,
    llm_judge_create,
)
from annotations.services.studies import study_criteria
from annotations.views.common import error_dict


class Command(BaseCommand):
    help = (
        "Run an AI judge over a study's comparisons in the foreground, with progress. With --base-url and --model, "
        "creates the LLM judge named --name if the study has none (or reuses it); --name alone runs an existing "
        "judge (an LLM or a reward-model judge). Judged comparisons are skipped, so running again resumes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--name", required=True, help="the judge's name in the study")
        parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8001/v1")
        parser.add_argument("--model", help="the model name the endpoint serves")
        parser.add_argument("--api-key-env", default="", help="environment variable that holds the API key")
        parser.add_argument("--criteria", nargs="+", default=[], metavar="KEY", help="criterion keys (default all)")
        parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 8)")
        parser.add_argument("--no-swap", action="store_true", help="judge each pair in one order only")
        parser.add_argument("--per-criterion", action="store_true", help="one request per criterion")
        parser.add_argument("--persona", default="", help="persona text put before the judge's instructions")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']!r}.")
        judge = judge_by_name(study=study, name=options["name"])
        try:
            if judge is None:
                judge = self._create(study, options)
            elif options["base_url"] or options["model"]:
                if (options["base_url"] or judge.base_url) != judge.base_url or (
                    options["model"] or judge.model_name
                ) != judge.model_name:
                    raise CommandError(
                        f"Judge {judge.name!r} already exists with another endpoint or model; "
                        "choose another --name or omit --base-url/--model to run it as it is."
                    )
            if options["concurrency"] and judge.kind == Judge.Kind.LLM_ENDPOINT:
                Judge.objects.filter(pk=judge.pk).update(concurrency=options["concurrency"])
                judge.refresh_from_db()
            run = judge_run_create(judge=judge, criterion_keys=options["criteria"] or None, actor=None, dispatch=False)
        except ValidationError as error:
            raise CommandError(_words(error)) from None
        where = judge.base_url if judge.kind == Judge.Kind.LLM_ENDPOINT else "reward models"
        self.stdout.write(
            f"Judging {run.total_comparisons} comparisons of {study.slug} with {judge.name} ({where}; "
            f"key: {judge_key_source(judge)}; criteria: {', '.join(run.criterion_keys)}; "
            f"{'both orders' if judge.swap else 'one order'})"
        )
        status = judge_run_execute(run_id=run.pk, worker="command", on_progress=self._progress)
        run.refresh_from_db()
        self.stdout.write(
            f"{status}: {run.done_comparisons} judged, {run.failed_comparisons} failed, {run.calls} calls "
            f"({run.failed_calls} failed), tokens {run.prompt_tokens} in / {run.completion_tokens} out"
        )
        if status != JobStatus.SUCCEEDED:
            raise CommandError(run.error or f"The run ended {status}.")

    def _create(self, study: Study, options: dict) -> Judge:
        if not options["base_url"] or not options["model"]:
            raise CommandError(
                f"The study has no judge named {options['name']!r}: give --base-url and --model to create an LLM judge."
            )
        keys = {c.key for c in study_criteria(study)}
        unknown = [k for k in options["criteria"] if k not in keys]
        if unknown:
            raise CommandError(
                f"Unknown criteria for {study.slug}: {', '.join(unknown)}; known: {', '.join(sorted(keys))}."
            )
        return llm_judge_create(
            study=study,
            name=options["name"],
            base_url=options["base_url"],
            model_name=options["model"],
            api_key_env=options["api_key_env"],
            persona=options["persona"],
            mode=Judge.Mode.PER_CRITERION if options["per_criterion"] else Judge.Mode.JOINT,
            swap=not options["no_swap"],
            concurrency=options["concurrency"] or 8,
            actor=None,
        )

    def _progress(self, run: JudgeRun) -> None:
        finished = run.done_comparisons + run.failed_comparisons
        self.stdout.write(
            f"  {finished}/{run.total_comparisons} comparisons ({run.progress:.0%}); {run.failed_comparisons} failed"
        )


def _words(error: ValidationError) -> str:
    return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error_dict(error, "error").items())
