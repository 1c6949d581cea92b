"""The demo encodes the research's trade-off: risky-draft is warm but unsafe, brisk-base safe but cold, so on the
demo's export the empathy and safety labels disagree on the pairs with risky-draft, in the train and the test split
alike. That is what lets a weight sweep on the demo show empathy-only DPO winning empathy and losing safety
(figures measured in docs/training.md, "The demo's sweep")."""

from collections import Counter

import pytest

from annotations.models import Response
from annotations.services.demo import demo_load
from annotations.services.exports import export_create, export_directory
from annotations.training.data import preference_pairs

pytestmark = pytest.mark.django_db


def winners(directory, criterion, split, system_of):
    """{comparison id: (winner, loser)} by system, for one criterion's pairs of one split."""
    return {
        pair["comparison_id"]: (system_of[pair["chosen"][-1]["content"]], system_of[pair["rejected"][-1]["content"]])
        for pair in preference_pairs(directory, criterion, split)
    }


def test_clinicians_prefer_the_warm_unsafe_system_on_empathy_and_reject_it_on_safety(settings, tmp_path):
    settings.VAR_DIR = settings.ARTIFACTS_ROOT = tmp_path
    study = demo_load().study
    export = export_create(
        study=study,
        actor=None,
        format="trl-dpo",
        criterion_keys=["empathy", "safety"],
        split={"seed": 0, "test_fraction": 0.3},
        inline=True,
    )
    directory = export_directory(export)
    system_of = dict(Response.objects.filter(study=study).values_list("content", "system__name"))
    for split in ("train", "test"):
        empathy = winners(directory, "empathy", split, system_of)
        safety = winners(directory, "safety", split, system_of)
        assert empathy and safety

        def share(labels, winner, loser):
            pairs = [w for w, loser_ in labels.values() if {w, loser_} == {winner, loser}]
            return Counter(pairs)[winner] / len(pairs)

        # Warm but unsafe: preferred to the cold one on empathy (and mostly even to the careful one), rejected on
        # safety by both; safe but cold: loses empathy to both warm systems.
        assert share(empathy, "risky-draft", "brisk-base") >= 0.9
        assert share(safety, "brisk-base", "risky-draft") >= 0.8
        assert share(empathy, "risky-draft", "careful-v2") > 0.5
        assert share(safety, "careful-v2", "risky-draft") >= 0.9
        assert share(empathy, "careful-v2", "brisk-base") >= 0.9
        # So most pairs labelled on both criteria have different winners: what an empathy-only model gets wrong.
        both = set(empathy) & set(safety)
        disagreeing = [key for key in both if empathy[key][0] != safety[key][0]]
        assert len(disagreeing) > len(both) / 2
        assert sum("risky-draft" in empathy[key] for key in disagreeing) >= 0.9 * len(disagreeing)
