import json
from collections import Counter

import pytest

from annotations.exporting import (
    AggregationPolicy,
    CriterionSpec,
    ExportInputError,
    ExportSpec,
    PromptSplitter,
    SplitConfig,
    SplitConfigError,
    StudyInfo,
    write_export,
)
from annotations.exporting.synthetic import generate_comparisons


def spec(split: SplitConfig, fmt: str = "trl-dpo") -> ExportSpec:
    return ExportSpec(
        format=fmt,
        file_format="jsonl",
        criteria=(CriterionSpec("empathy", "v1"), CriterionSpec("safety", "v1")),
        scale_points=7,
        policy=AggregationPolicy(ties="separate_file"),
        split=split,
        study=StudyInfo("s", "S"),
        code_version="test",
    )


def prompts_by_split(directory, paths):
    seen: dict[str, set[str]] = {}
    for path in paths:
        split = path.rsplit("/", 1)[1].split(".")[0]
        for line in (directory / path).read_text().splitlines():
            prompt_text = json.dumps(json.loads(line)["prompt"], sort_keys=True)
            seen.setdefault(prompt_text, set()).add(split)
    return seen


@pytest.mark.parametrize("fmt", ["trl-dpo", "multi-objective"])
def test_no_prompt_appears_in_two_splits(tmp_path, fmt):
    config = SplitConfig(seed=3, test_fraction=0.3, validation_fraction=0.2)
    result = write_export(generate_comparisons(2000, comparisons_per_prompt=5), spec(config, fmt), tmp_path / "out")
    data_files = [p for p in result.manifest["files"] if p.endswith(".jsonl")]
    seen = prompts_by_split(result.directory, data_files)
    assert len(seen) > 300
    assert all(len(splits) == 1 for splits in seen.values())
    # All three splits really are used.
    assert {next(iter(s)) for s in seen.values()} == {"train", "validation", "test"}


def test_hashed_split_is_seeded_and_near_the_fractions():
    prompts = [f"p{i}" for i in range(20000)]
    first = PromptSplitter(SplitConfig(seed=1, test_fraction=0.2, validation_fraction=0.1))
    again = PromptSplitter(SplitConfig(seed=1, test_fraction=0.2, validation_fraction=0.1))
    other_seed = PromptSplitter(SplitConfig(seed=2, test_fraction=0.2, validation_fraction=0.1))
    assignment = [first.split_of(p) for p in prompts]
    assert assignment == [again.split_of(p) for p in prompts]
    assert assignment != [other_seed.split_of(p) for p in prompts]
    shares = Counter(assignment)
    assert shares["test"] / len(prompts) == pytest.approx(0.2, abs=0.015)
    assert shares["validation"] / len(prompts) == pytest.approx(0.1, abs=0.015)


def test_stratified_split_takes_exact_shares_in_every_stratum():
    strata = {f"p{i}": ("crisis" if i % 5 == 0 else "everyday") for i in range(1000)}
    splitter = PromptSplitter.stratified(SplitConfig(seed=4, test_fraction=0.2, stratify_by="category"), strata)
    per_stratum = Counter((stratum, splitter.split_of(p)) for p, stratum in strata.items())
    assert per_stratum[("crisis", "test")] == 40  # 200 crisis prompts
    assert per_stratum[("everyday", "test")] == 160  # 800 everyday prompts
    assert per_stratum[("crisis", "train")] == 160


def test_stratified_export_needs_the_strata_and_every_prompt_in_them(tmp_path):
    config = SplitConfig(seed=0, test_fraction=0.2, stratify_by="category")
    with pytest.raises(ExportInputError, match="prompt_strata"):
        write_export(generate_comparisons(10), spec(config), tmp_path / "a")
    with pytest.raises(ExportInputError, match="prompt-000000002"):
        write_export(
            generate_comparisons(10, comparisons_per_prompt=4),
            spec(config),
            tmp_path / "b",
            prompt_strata={"prompt-000000000": "x", "prompt-000000001": "y"},
        )
    assert not (tmp_path / "b").exists()


def test_a_stratified_splitter_cannot_be_built_without_strata():
    with pytest.raises(SplitConfigError, match="stratified"):
        PromptSplitter(SplitConfig(stratify_by="category"))
