from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from annotations.services.demo import demo_base_model_ensure, demo_export_ensure, demo_load


class Command(BaseCommand):
    help = "Create the demo accounts (one researcher, three clinicians) and the demo study. Safe to run again."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--no-model", action="store_true", help="skip building the tiny local base model for training jobs"
        )

    def handle(self, *args, no_model: bool = False, **options) -> None:
        result = demo_load()
        credentials = Path(settings.VAR_DIR) / "demo-credentials.txt"
        if result.created_accounts:
            credentials.parent.mkdir(parents=True, exist_ok=True)
            with credentials.open("a") as out:
                for username, password in result.created_accounts.items():
                    out.write(f"{username} {password}\n")
            credentials.chmod(0o600)
            self.stdout.write("Demo accounts (shown once; also in var/demo-credentials.txt):")
            for username, password in result.created_accounts.items():
                self.stdout.write(f"  {username:<12} {password}")
        else:
            self.stdout.write(f"Demo accounts already exist; their passwords are in {credentials}.")
        self.stdout.write(f"Demo study: /studies/{result.study.slug}/ ({result.study.get_status_display()}).")
        export = demo_export_ensure(study=result.study)
        self.stdout.write(
            f"Demo export for training: {export.public_id} (every criterion, 30% of prompts held out for testing)."
        )
        if not no_model:
            model_dir = demo_base_model_ensure(Path(settings.VAR_DIR) / "models" / "tiny-chat")
            self.stdout.write(f"Tiny base model for training jobs (built locally, no download): {model_dir.resolve()}")
