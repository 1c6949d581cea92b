from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services.comparisons import comparisons_build, responses_screen


class Command(BaseCommand):
    help = "Build a study's comparisons (all pairs of systems, or each against a reference), then screen responses."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True)
        parser.add_argument("--strategy", choices=["all_pairs", "reference"], default="all_pairs")
        parser.add_argument("--reference")
        parser.add_argument("--budget", type=int)
        parser.add_argument("--seed", type=int, default=0)

    def handle(
        self, *args, study: str, strategy: str, reference: str | None, budget: int | None, seed: int, **options
    ) -> None:
        target = Study.objects.filter(slug=study).first()
        if target is None:
            raise CommandError(f"No study {study!r}.")
        try:
            created = comparisons_build(
                study=target, strategy=strategy, reference_system=reference, budget=budget, seed=seed
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        screening = responses_screen(study=target)
        self.stdout.write(f"Created {created} comparisons; {screening.open_hits} open screening hit(s).")
