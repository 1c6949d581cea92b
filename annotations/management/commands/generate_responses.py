import socket
import threading

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from annotations.models import GenerationRun, JobStatus, PreferenceExport, Study, TrainingJob
from annotations.services.generation import FINISHED, generation_run_create, generation_run_execute
from annotations.views.common import error_dict

PROMPT_SETS = {"all": GenerationRun.PromptSet.ALL, "test": GenerationRun.PromptSet.TEST_SPLIT}


class Command(BaseCommand):
    help = (
        "Generate responses to a study's prompts in the foreground, from a succeeded training job (--job) or an "
        "OpenAI-compatible endpoint (--base-url, --model, --api-key-env); they become the responses of --system."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", required=True)
        parser.add_argument("--system", required=True, help="name of the system that holds the responses")
        parser.add_argument("--job", help="public id of a succeeded DPO/MODPO/SFT/merge job")
        parser.add_argument("--base-url", default="", help="OpenAI-compatible endpoint, e.g. https://host/v1")
        parser.add_argument("--model", default="", help="model name at the endpoint")
        parser.add_argument("--api-key-env", default="", help="environment variable holding the endpoint's API key")
        parser.add_argument("--prompts", choices=sorted(PROMPT_SETS), default="all")
        parser.add_argument("--export", help="public id of the export whose test split to answer (default: the job's)")
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--user", help="username recorded as the launcher")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']!r}.")
        job = _by_public_id(TrainingJob, study, options["job"], "job") if options["job"] else None
        export = _by_public_id(PreferenceExport, study, options["export"], "export") if options["export"] else None
        if (job is None) == (not options["base_url"]):
            raise CommandError("Give either --job or --base-url (with --model).")
        actor = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        settings = {
            name: options[name]
            for name in ("max_new_tokens", "temperature", "top_p", "seed", "batch_size")
            if options[name] is not None
        }
        try:
            run = generation_run_create(
                study=study,
                system_name=options["system"],
                source=GenerationRun.Source.TRAINING_JOB if job else GenerationRun.Source.ENDPOINT,
                training_job=job,
                base_url=options["base_url"],
                model_name=options["model"],
                api_key_env=options["api_key_env"],
                prompt_set=PROMPT_SETS[options["prompts"]],
                export=export,
                settings=settings,
                actor=actor,
                dispatch=False,
            )
        except ValidationError as exc:
            errors = error_dict(exc, "error")
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())) from None
        self.stdout.write(
            f"Generation run {run.public_id}: {run.total_prompts} prompt(s) for system {run.system_name}."
        )
        self._run_with_progress(run)
        run.refresh_from_db()
        self.stdout.write(f"{run.status}: {run.done_prompts}/{run.total_prompts} prompts answered.")
        if run.status != JobStatus.SUCCEEDED:
            raise CommandError(run.error.strip().splitlines()[-1] if run.error.strip() else f"Run {run.status}.")

    def _run_with_progress(self, run: GenerationRun) -> None:
        """Execute in a thread (the same code a worker runs) and print progress until it ends."""

        def work() -> None:
            try:
                generation_run_execute(run_id=run.pk, worker=f"manage.py@{socket.gethostname()}")
            finally:
                connection.close()

        thread = threading.Thread(target=work, name=f"generation-run-{run.pk}")
        thread.start()
        last = None
        try:
            while thread.is_alive():
                thread.join(timeout=1.0)
                row = GenerationRun.objects.filter(pk=run.pk).values_list("done_prompts", "total_prompts").first()
                if row != last:
                    self.stdout.write(f"  {row[0]}/{row[1]} prompts")
                    last = row
        except KeyboardInterrupt:
            GenerationRun.objects.filter(pk=run.pk).exclude(status__in=FINISHED).update(cancel_requested=True)
            self.stdout.write("Cancel requested; stopping before the next batch.")
            thread.join()


def _by_public_id(model, study: Study, public_id: str, what: str):
    try:
        found = model.objects.filter(study=study, public_id=public_id).first()
    except ValidationError:
        found = None
    if found is None:
        raise CommandError(f"No {what} {public_id} in study {study.slug}.")
    return found
