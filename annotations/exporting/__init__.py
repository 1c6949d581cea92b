"""Pure export core: comparison records in, reproducible preference datasets out. No Django here.

The caller streams ComparisonRecord objects from a chunked cursor into write_export together with
an ExportSpec, and stores the returned manifest; write_zip and verify_export handle the archive.
See docs/export-format.md.
"""

from annotations.exporting.aggregate import (
    CriterionOutcome,
    VoteCounts,
    aggregate_comparison,
    aggregate_votes,
    count_values,
    is_disputed,
    plurality,
)
from annotations.exporting.archive import verify_export, write_zip
from annotations.exporting.card import render_dataset_card
from annotations.exporting.export import (
    CriterionSpec,
    ExportResult,
    ExportSpec,
    StudyInfo,
    data_path,
    ties_path,
    write_export,
)
from annotations.exporting.policy import AggregationPolicy, PolicyError
from annotations.exporting.records import ComparisonRecord, ExportInputError, Message, ResponseRecord, VoteRecord
from annotations.exporting.splits import PromptSplitter, SplitConfig, SplitConfigError

__all__ = [
    "AggregationPolicy",
    "ComparisonRecord",
    "CriterionOutcome",
    "CriterionSpec",
    "ExportInputError",
    "ExportResult",
    "ExportSpec",
    "Message",
    "PolicyError",
    "PromptSplitter",
    "ResponseRecord",
    "SplitConfig",
    "SplitConfigError",
    "StudyInfo",
    "VoteCounts",
    "VoteRecord",
    "aggregate_comparison",
    "aggregate_votes",
    "count_values",
    "data_path",
    "is_disputed",
    "plurality",
    "render_dataset_card",
    "ties_path",
    "verify_export",
    "write_export",
    "write_zip",
]
