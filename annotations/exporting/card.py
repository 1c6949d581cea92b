"""The dataset card (README.md of an export), rendered from the manifest alone so it is deterministic."""

from __future__ import annotations

import json
from typing import Any

_DECISION_TEXT = {
    "majority": (
        "the option (A, tie, B) with strictly the most counted votes wins; a tie is a label only when the raters "
        'chose "tie" most often; a shared top (1 A against 1 B, or as many ties as votes for a side) is a '
        'disagreement: no label, counted as "disputed" in the outcomes, never written as a tie'
    ),
    "unanimity": "every counted vote must be on the same option, otherwise the criterion gets no label",
    "adjudicated": (
        "where a researcher adjudicated a disputed criterion of a comparison, the recorded decision (A, tie or B) "
        "is the label, whatever the votes; everywhere else the majority rule: the option with strictly the most "
        'counted votes wins, and a shared top is "disputed" (no label)'
    ),
}


def render_dataset_card(manifest: dict[str, Any]) -> str:
    fmt = manifest["format"]
    ext = manifest["file_format"]
    criteria: list[str] = manifest["criteria"]
    splits: list[str] = manifest["splits"]
    policy = manifest["policy"]
    study = manifest["study"]
    lines: list[str] = []
    add = lines.append

    # Front matter lets the Hugging Face Hub and `datasets` find the files per config and split.
    add("---")
    add("configs:")
    if fmt == "multi-objective":
        add("- config_name: default")
        add("  data_files:")
        for split in splits:
            add(f"  - split: {split}")
            add(f"    path: data/{split}.{ext}")
    else:
        for criterion in criteria:
            add(f"- config_name: {criterion}")
            add("  data_files:")
            for split in splits:
                add(f"  - split: {split}")
                add(f"    path: data/{criterion}/{split}.{ext}")
    add("---")
    add("")
    add(f"# {study['title']}: {fmt} preference data")
    add("")
    add(
        "Clinicians rated blinded pairs of AI responses to the same help-seeker conversation, per criterion "
        f"(A / tie / B on a {manifest['scale_points']}-point scale). This dataset turns those ratings into "
        "training rows under the aggregation policy below. All text is study material; no row names a rater or a system."
    )
    add("")
    add("## Provenance")
    add("")
    add(f"- study: `{study['slug']}` ({study['title']})")
    add(f"- code version: `{manifest['code_version']}`")
    add(f"- created at: {manifest['created_at'] if manifest['created_at'] is not None else 'not recorded'}")
    add(f"- format: `{fmt}`, files: `{ext}`")
    add(f"- filters: `{json.dumps(manifest['filters'], sort_keys=True, ensure_ascii=False)}`")
    add(f"- comparisons read: {manifest['comparisons']['total']}")
    add(
        "- comparisons left out because a response in them was excluded from exports (safety review): "
        f"{manifest['comparisons']['excluded_responses']}"
    )
    add("- every file's sha256 is in `manifest.json` (`files`)")
    add("")
    add("## Criteria and rubric versions")
    add("")
    add("| criterion | rubric version |")
    add("|---|---|")
    for criterion in criteria:
        add(f"| {criterion} | {manifest['rubric_versions'][criterion]} |")
    add("")
    add("## Aggregation policy")
    add("")
    add(f"- decision: `{policy['decision']}`: {_DECISION_TEXT[policy['decision']]}")
    add(f"- at least {policy['min_votes']} counted vote(s) per criterion, otherwise no label")
    if policy["min_margin"] > 0:
        add(
            f"- a chosen side needs a strength-weighted margin of at least {policy['min_margin']} "
            "(mean of value / max|value| over counted votes, toward the chosen side)"
        )
    else:
        add("- no minimum strength-weighted margin")
    if fmt == "multi-objective":
        add('- ties: kept as `"tie"` labels in the rows (the tie setting applies to pairwise formats)')
    elif policy["ties"] == "separate_file":
        add("- ties: written to `ties/<criterion>/<split>` (both responses and the vote counts), never to `data/`")
    else:
        add("- ties: dropped")
    if policy["min_gold_accuracy"] is not None:
        unknown = "counted" if policy["keep_raters_without_gold"] else "not counted"
        add(
            f"- raters with gold accuracy below {policy['min_gold_accuracy']} are not counted; raters without a gold accuracy are {unknown}"
        )
    else:
        add("- no gold-accuracy threshold")
    if policy["include_judges"]:
        add(
            "- AI judgments count as votes; they are reported apart (`judge_votes` in multi-objective rows, `raters.judges` here)"
        )
    else:
        add("- AI judgments are not counted")
    add(
        '- a comparison that any clinician flagged as "both unacceptable" never yields a chosen response, '
        f"on any criterion ({manifest['comparisons']['both_unacceptable']} such comparison(s) here)"
    )
    if policy["decision"] == "adjudicated":
        counts = ", ".join(f"{c}: {manifest['adjudicated'][c]}" for c in criteria)
        add(f"- labels decided by adjudication, per criterion: {counts} (`adjudicated` in `manifest.json`)")
    add("")
    add("```json")
    add(json.dumps(policy, sort_keys=True, indent=2))
    add("```")
    add("")
    add("## Raters")
    add("")
    add(f"- clinicians counted: {manifest['raters']['clinicians']}")
    add(f"- AI judges counted: {manifest['raters']['judges']}")
    for reason, count in manifest["raters_excluded"].items():
        add(f"- excluded ({reason.replace('_', ' ')}): {count}")
    add("")
    add("## Agreement at export time")
    add("")
    if manifest["agreement"]:
        add("As computed by the platform when the export was made:")
        add("")
        add("```json")
        add(json.dumps(manifest["agreement"], sort_keys=True, indent=2, ensure_ascii=False))
        add("```")
    else:
        add("Not supplied.")
    add("")
    add("## Splits")
    add("")
    split = manifest["split"]
    add(
        f"By prompt (a prompt never appears in two splits), seed {split['seed']}, test fraction "
        f"{split['test_fraction']}, validation fraction {split['validation_fraction']}, "
        + (f"stratified by `{split['stratify_by']}`." if split["stratify_by"] else "not stratified.")
    )
    add("")
    add(
        "| criterion | "
        + " | ".join(splits)
        + " |"
        + ("".join(f" {s} ties |" for s in splits) if _has_tie_files(manifest) else "")
    )
    add("|---|" + "---|" * (len(splits) * (2 if _has_tie_files(manifest) else 1)))
    for criterion in criteria:
        cells = [str(manifest["rows"][criterion][s]) for s in splits]
        if _has_tie_files(manifest):
            cells += [str(manifest["tie_rows"][criterion][s]) for s in splits]
        add(f"| {criterion} | " + " | ".join(cells) + " |")
    add("")
    if fmt == "multi-objective":
        add(
            "Counts are rows whose label for that criterion prefers A or B; rows per file are in `manifest.json` (`file_rows`)."
        )
        add("")
    add("Outcome per criterion over all comparisons:")
    add("")
    statuses = list(next(iter(manifest["outcomes"].values())).keys())
    add("| criterion | " + " | ".join(s.replace("_", " ") for s in statuses) + " |")
    add("|---|" + "---|" * len(statuses))
    for criterion in criteria:
        add(f"| {criterion} | " + " | ".join(str(manifest["outcomes"][criterion][s]) for s in statuses) + " |")
    add("")
    add("## Rows")
    add("")
    add(_ROW_TEXT[fmt])
    add("")
    add("## Loading and training")
    add("")
    add(_usage(fmt, ext, criteria, splits))
    return "\n".join(lines) + "\n"


def _has_tie_files(manifest: dict[str, Any]) -> bool:
    return manifest["format"] != "multi-objective" and manifest["policy"]["ties"] == "separate_file"


_ROW_TEXT = {
    "trl-dpo": (
        "TRL's conversational preference format with an explicit prompt: `prompt` (list of role/content messages), "
        "`chosen` and `rejected` (one assistant message each), `comparison_id`."
    ),
    "reward": (
        "TRL's conversational preference format with an explicit prompt, plus `margin` in [0, 1]: the mean vote strength "
        "toward the chosen response (value / max|value|), which RewardTrainer subtracts inside its loss."
    ),
    "multi-objective": (
        "`comparison_id`, `prompt`, `response_a` (the first response of the comparison), `response_b`, and `labels`: per "
        'criterion `preferred` ("a", "b", "tie" or null), `votes` {a, tie, b} counted, `judge_votes` (the AI judges\' '
        "part of them), `agreement` (share of counted votes on the preferred option) and `margin` (strength toward it, [0, 1])."
    ),
}


def _usage(fmt: str, ext: str, criteria: list[str], splits: list[str]) -> str:
    loader = "json" if ext == "jsonl" else "parquet"
    if fmt == "multi-objective":
        files = ", ".join(f'"{s}": "data/{s}.{ext}"' for s in splits)
        return "\n".join(
            [
                "```python",
                "from datasets import load_dataset",
                "",
                f'dataset = load_dataset("{loader}", data_files={{{files}}})',
                'empathy_pairs = dataset["train"].filter(lambda row: row["labels"]["'
                + criteria[0]
                + '"]["preferred"] in ("a", "b"))',
                "```",
            ]
        )
    criterion = criteria[0]
    files = ", ".join(f'"{s}": "data/{criterion}/{s}.{ext}"' for s in splits)
    trainer = "DPOTrainer, DPOConfig" if fmt == "trl-dpo" else "RewardTrainer, RewardConfig"
    config = "DPOConfig" if fmt == "trl-dpo" else "RewardConfig"
    name = trainer.split(",")[0]
    model_note = (
        "# model: a causal LM (AutoModelForCausalLM)"
        if fmt == "trl-dpo"
        else "# model: AutoModelForSequenceClassification with num_labels=1"
    )
    return "\n".join(
        [
            "```python",
            "from datasets import load_dataset",
            f"from trl import {trainer}",
            "",
            f'dataset = load_dataset("{loader}", data_files={{{files}}})',
            model_note,
            f'trainer = {name}(model=model, args={config}(output_dir="out"), train_dataset=dataset["train"],',
            "    processing_class=tokenizer)",
            "trainer.train()",
            "```",
        ]
    )
