"""Study data import: JSONL (prompts, responses, historical ratings, judgments) and CSV (prompts with responses).

All or nothing: the whole file is applied in one transaction and rolled back if any line is wrong, after
every line has been checked, so one run lists all the errors (up to a cap). Re-importing the same file
changes nothing; a record that reuses an id with different content is a conflict. The file is read line
by line and written in chunks, so a large file is never held in memory (only ids and content hashes are).
"""

import csv
import hashlib
import io
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotations.models import (
    Assignment,
    Comparison,
    Judge,
    Judgment,
    Prompt,
    Rater,
    Rating,
    Response,
    Study,
    System,
)
from annotations.services.audit import audit_record
from annotations.services.studies import study_create, study_criteria

CHUNK_LINES = 1000
KINDS = ("prompt", "response", "rating", "judgment")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ImportIssue:
    filename: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.filename}, line {self.line}"
        return f"{where}, field '{self.field}': {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class ImportSummary:
    filename: str
    created: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in KINDS})
    unchanged: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in KINDS})

    @property
    def changed_nothing(self) -> bool:
        return not any(self.created.values())

    def as_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "created": self.created, "unchanged": self.unchanged}

    def describe(self) -> str:
        if self.changed_nothing:
            return f"{self.filename}: nothing changed (all {sum(self.unchanged.values())} records already imported)."
        parts = [f"{n} {kind}s" for kind, n in self.created.items() if n]
        return f"{self.filename}: created {', '.join(parts)}; {sum(self.unchanged.values())} records unchanged."


class ImportFailed(Exception):
    """The file was rejected; nothing was written. `issues` lists every problem found (up to the cap)."""

    def __init__(self, issues: list[ImportIssue], truncated: bool = False) -> None:
        self.issues = sorted(issues, key=lambda issue: issue.line)
        self.truncated = truncated
        more = " (more errors not shown)" if truncated else ""
        super().__init__(f"{len(issues)} error(s){more}:\n" + "\n".join(str(i) for i in self.issues))


class _TooManyErrors(Exception):
    pass


class _Rollback(Exception):
    pass


# JSON a database row cannot hold, or that no record needs: refused with the field's path, never a 500.
MAX_JSON_DEPTH = 20


@dataclass(frozen=True)
class _Unreadable:
    """A JSON number parsed into a marker, so the problem is reported with the field that holds it."""

    message: str


def _parse_int(text: str) -> int | _Unreadable:
    digits = len(text.lstrip("-"))
    if digits > sys.get_int_max_str_digits():
        return _Unreadable(f"is an integer of {digits} digits; numbers in an import are at most a few digits long")
    return int(text)


def _parse_float(text: str) -> float | _Unreadable:
    number = float(text)
    return number if math.isfinite(number) else _Unreadable(f"{text[:20]} is not a finite number")


def _parse_constant(text: str) -> _Unreadable:
    return _Unreadable(f"{text} is not a finite number")


def _json_line(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def _unstorable(value: Any, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first (field path, problem) in a parsed record that the database cannot store, else None."""
    if isinstance(value, _Unreadable):
        return path, value.message
    if isinstance(value, str):
        return (path, "contains a NUL character (\\u0000), which cannot be stored") if "\x00" in value else None
    if isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            return path, f"is nested more than {MAX_JSON_DEPTH} levels deep"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and "\x00" in key:
                return path, "has a key with a NUL character (\\u0000), which cannot be stored"
            where = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
            problem = _unstorable(item, where, depth + 1)
            if problem:
                return problem
    return None


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class _Record:
    line: int
    kind: str
    data: dict[str, Any]


class _Importer:
    def __init__(self, *, study: Study, filename: str, max_text_chars: int, max_errors: int) -> None:
        self.study = study
        self.filename = filename
        self.max_text_chars = max_text_chars
        self.max_errors = max_errors
        self.issues: list[ImportIssue] = []
        self.summary = ImportSummary(filename=filename)
        self.criteria = {c.key: c for c in study_criteria(study)}
        self.max_abs = study.max_abs_value
        # external id -> (db id, content hash); ids only, so memory stays small for large files.
        self.prompts: dict[str, tuple[int, str]] = {}
        self.responses: dict[str, tuple[int, int, int, str]] = {}  # id -> (pk, prompt pk, system pk, hash)
        self.systems: dict[str, int] = dict(System.objects.filter(study=study).values_list("name", "pk"))
        self.raters: dict[tuple[str, str], Rater] = {}
        self.judges: dict[str, Judge] = {}

    # ---- errors -------------------------------------------------------------------------------
    def error(self, line: int, field_name: str, message: str) -> None:
        self.issues.append(ImportIssue(self.filename, line, field_name, message))
        if len(self.issues) >= self.max_errors:
            raise _TooManyErrors

    # ---- field checks -------------------------------------------------------------------------
    def text(self, rec: _Record, name: str, *, required: bool = True) -> str | None:
        value = rec.data.get(name)
        if value is None:
            if required:
                self.error(rec.line, name, "is missing; expected a non-empty string")
            return None
        if not isinstance(value, str):
            self.error(rec.line, name, f"expected a string, got {type(value).__name__}")
            return None
        if not value.strip():
            if required:
                self.error(rec.line, name, "is empty; expected a non-empty string")
            return None
        if len(value) > self.max_text_chars:
            self.error(rec.line, name, f"is {len(value)} characters; the limit is {self.max_text_chars}")
            return None
        return value

    def meta(self, rec: _Record) -> dict[str, Any] | None:
        value = rec.data.get("meta", {})
        if not isinstance(value, dict):
            self.error(rec.line, "meta", f"expected an object, got {type(value).__name__}")
            return None
        return value

    def messages(self, rec: _Record) -> list[dict[str, str]] | None:
        value = rec.data.get("messages")
        if value is None:
            self.error(rec.line, "messages", "is missing; expected a list of {role, content} messages")
            return None
        if not isinstance(value, list) or not value:
            self.error(rec.line, "messages", "expected a non-empty list of {role, content} messages")
            return None
        cleaned = []
        for i, message in enumerate(value):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                self.error(rec.line, where, "expected an object with role and content")
                return None
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                self.error(rec.line, f"{where}.role", f"expected one of {', '.join(ROLES)}, got {role!r}")
                return None
            if not isinstance(content, str) or not content.strip():
                self.error(rec.line, f"{where}.content", "expected a non-empty string")
                return None
            if len(content) > self.max_text_chars:
                self.error(
                    rec.line, f"{where}.content", f"is {len(content)} characters; the limit is {self.max_text_chars}"
                )
                return None
            cleaned.append({"role": role, "content": content})
        if cleaned[-1]["role"] != "user":
            self.error(rec.line, "messages", "the conversation must end with the help-seeker's (user) message")
            return None
        return cleaned

    def vote_fields(self, rec: _Record) -> dict[str, Any] | None:
        ok = True
        a = self.text(rec, "response_a")
        b = self.text(rec, "response_b")
        ok &= a is not None and b is not None
        criterion_key = self.text(rec, "criterion")
        criterion = None
        if criterion_key is not None:
            criterion = self.criteria.get(criterion_key)
            if criterion is None:
                self.error(
                    rec.line,
                    "criterion",
                    f"unknown criterion {criterion_key!r}; expected one of {', '.join(self.criteria)}",
                )
        ok &= criterion is not None
        value = rec.data.get("value")
        if value is None:
            self.error(rec.line, "value", f"is missing; expected an integer from {-self.max_abs} to {self.max_abs}")
            ok = False
        elif isinstance(value, bool) or not isinstance(value, int):
            self.error(rec.line, "value", f"expected an integer from {-self.max_abs} to {self.max_abs}, got {value!r}")
            ok = False
        elif abs(value) > self.max_abs:
            self.error(
                rec.line,
                "value",
                f"{value} is outside the study's {self.study.scale_points}-point scale ({-self.max_abs} to {self.max_abs})",
            )
            ok = False
        flag = rec.data.get("both_unacceptable", False)
        if not isinstance(flag, bool):
            self.error(rec.line, "both_unacceptable", f"expected true or false, got {flag!r}")
            ok = False
        rationale = rec.data.get("rationale", "")
        if not isinstance(rationale, str):
            self.error(rec.line, "rationale", f"expected a string, got {type(rationale).__name__}")
            ok = False
        elif len(rationale) > self.max_text_chars:
            self.error(rec.line, "rationale", f"is {len(rationale)} characters; the limit is {self.max_text_chars}")
            ok = False
        if a is not None and a == b:
            self.error(rec.line, "response_b", "is the same response as response_a; a comparison needs two responses")
            ok = False
        if not ok:
            return None
        return {
            "a": a,
            "b": b,
            "criterion": criterion,
            "value": value,
            "both_unacceptable": flag,
            "rationale": rationale,
        }

    # ---- parsing ------------------------------------------------------------------------------
    def parse(self, rec: _Record) -> _Record | None:
        """Check one record's own fields; return it with cleaned data, or None after recording errors."""
        kind = rec.kind
        if kind == "prompt":
            pid, messages, meta = self.text(rec, "id"), self.messages(rec), self.meta(rec)
            if pid is None or messages is None or meta is None:
                return None
            return _Record(rec.line, kind, {"id": pid, "messages": messages, "meta": meta})
        if kind == "response":
            rid, prompt, system, content, meta = (
                self.text(rec, "id"),
                self.text(rec, "prompt"),
                self.text(rec, "system"),
                self.text(rec, "content"),
                self.meta(rec),
            )
            if None in (rid, prompt, system, content, meta):
                return None
            return _Record(
                rec.line, kind, {"id": rid, "prompt": prompt, "system": system, "content": content, "meta": meta}
            )
        label_field = "rater" if kind == "rating" else "judge"
        label = self.text(rec, label_field)
        vote = self.vote_fields(rec)
        if label is None or vote is None:
            return None
        return _Record(rec.line, kind, {"label": label, **vote})

    def records_from_jsonl(self, stream: BinaryIO) -> Iterator[_Record]:
        for line_no, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.error(line_no, "", f"is not valid UTF-8 (byte {exc.start})")
                continue
            if not text.strip():
                continue
            try:
                data = _json_line(text)
            except json.JSONDecodeError as exc:
                self.error(line_no, "", f"malformed JSON: {exc.msg} at column {exc.colno}")
                continue
            except RecursionError:
                self.error(line_no, "", f"JSON nested too deeply (the limit is {MAX_JSON_DEPTH} levels)")
                continue
            if not isinstance(data, dict):
                self.error(line_no, "", "expected a JSON object")
                continue
            problem = _unstorable(data)
            if problem:
                self.error(line_no, *problem)
                continue
            kind = data.get("kind")
            if kind not in KINDS:
                self.error(line_no, "kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
                continue
            yield _Record(line_no, kind, data)

    def records_from_csv(self, stream: BinaryIO) -> Iterator[_Record]:
        try:
            text_stream = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            reader = csv.reader(text_stream)
            header = next(reader, None)
        except UnicodeDecodeError as exc:
            self.error(1, "", f"is not valid UTF-8 (byte {exc.start})")
            return
        except csv.Error as exc:
            self.error(1, "", f"malformed CSV: {exc}")
            return
        if header is None or len(header) < 3 or header[0] != "prompt_id" or header[1] != "prompt":
            self.error(1, "header", "expected columns prompt_id, prompt, then one column per system")
            return
        if any("\x00" in name for name in header):
            self.error(1, "header", "contains a NUL character, which cannot be stored")
            return
        systems = header[2:]
        line_no = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                self.error(line_no + 1, "", f"is not valid UTF-8 (byte {exc.start})")
                return
            except csv.Error as exc:
                self.error(line_no + 1, "", f"malformed CSV: {exc}")
                return
            line_no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                self.error(line_no, "", f"expected {len(header)} columns, got {len(row)}")
                continue
            nul_column = next((name for name, cell in zip(header, row, strict=True) if "\x00" in cell), None)
            if nul_column is not None:
                self.error(line_no, nul_column, "contains a NUL character, which cannot be stored")
                continue
            prompt_id = row[0]
            yield _Record(line_no, "prompt", {"id": prompt_id, "messages": [{"role": "user", "content": row[1]}]})
            for system, content in zip(systems, row[2:], strict=True):
                yield _Record(
                    line_no,
                    "response",
                    {"id": f"{prompt_id}:{system}", "prompt": prompt_id, "system": system, "content": content},
                )

    # ---- writing ------------------------------------------------------------------------------
    def flush(self, chunk: list[_Record]) -> None:
        by_kind: dict[str, list[_Record]] = {kind: [] for kind in KINDS}
        for rec in chunk:
            by_kind[rec.kind].append(rec)
        self.flush_prompts(by_kind["prompt"])
        self.flush_responses(by_kind["response"])
        self.flush_votes(by_kind["rating"] + by_kind["judgment"])

    def flush_prompts(self, recs: list[_Record]) -> None:
        unknown = [r.data["id"] for r in recs if r.data["id"] not in self.prompts]
        for pk, external_id, content_hash in Prompt.objects.filter(
            study=self.study, external_id__in=unknown
        ).values_list("pk", "external_id", "content_hash"):
            self.prompts[external_id] = (pk, content_hash)
        new: dict[str, tuple[Prompt, int]] = {}
        for rec in recs:
            content_hash = _hash({"messages": rec.data["messages"], "meta": rec.data["meta"]})
            known = self.prompts.get(rec.data["id"])
            pending = new.get(rec.data["id"])
            existing_hash = known[1] if known else (pending[0].content_hash if pending else None)
            if existing_hash is None:
                new[rec.data["id"]] = (
                    Prompt(
                        study=self.study,
                        external_id=rec.data["id"],
                        messages=rec.data["messages"],
                        meta=rec.data["meta"],
                        content_hash=content_hash,
                    ),
                    rec.line,
                )
            elif existing_hash == content_hash:
                self.summary.unchanged["prompt"] += 1
            else:
                self.error(rec.line, "id", f"prompt {rec.data['id']!r} was already imported with different content")
        created = Prompt.objects.bulk_create([p for p, _ in new.values()])
        for prompt in created:
            self.prompts[prompt.external_id] = (prompt.pk, prompt.content_hash)
        self.summary.created["prompt"] += len(created)

    def system_pk(self, name: str) -> int:
        if name not in self.systems:
            self.systems[name] = System.objects.create(study=self.study, name=name).pk
        return self.systems[name]

    def load_responses(self, external_ids: Iterable[str]) -> None:
        missing = [e for e in set(external_ids) if e not in self.responses]
        for pk, external_id, prompt_id, system_id, content_hash in Response.objects.filter(
            study=self.study, external_id__in=missing
        ).values_list("pk", "external_id", "prompt_id", "system_id", "content_hash"):
            self.responses[external_id] = (pk, prompt_id, system_id, content_hash)

    def load_prompts(self, external_ids: Iterable[str]) -> None:
        missing = [e for e in set(external_ids) if e not in self.prompts]
        for pk, external_id, content_hash in Prompt.objects.filter(
            study=self.study, external_id__in=missing
        ).values_list("pk", "external_id", "content_hash"):
            self.prompts[external_id] = (pk, content_hash)

    def flush_responses(self, recs: list[_Record]) -> None:
        self.load_responses(r.data["id"] for r in recs)
        self.load_prompts(r.data["prompt"] for r in recs)
        new: dict[str, Response] = {}
        for rec in recs:
            d = rec.data
            prompt = self.prompts.get(d["prompt"])
            if prompt is None:
                self.error(rec.line, "prompt", f"prompt {d['prompt']!r} is not defined (define it on an earlier line)")
                continue
            content_hash = _hash(
                {"prompt": d["prompt"], "system": d["system"], "content": d["content"], "meta": d.get("meta", {})}
            )
            known = self.responses.get(d["id"])
            existing_hash = known[3] if known else (new[d["id"]].content_hash if d["id"] in new else None)
            if existing_hash is None:
                new[d["id"]] = Response(
                    study=self.study,
                    prompt_id=prompt[0],
                    system_id=self.system_pk(d["system"]),
                    external_id=d["id"],
                    content=d["content"],
                    meta=d.get("meta", {}),
                    content_hash=content_hash,
                )
            elif existing_hash == content_hash:
                self.summary.unchanged["response"] += 1
            else:
                self.error(rec.line, "id", f"response {d['id']!r} was already imported with different content")
        created = Response.objects.bulk_create(list(new.values()))
        for response in created:
            self.responses[response.external_id] = (
                response.pk,
                response.prompt_id,
                response.system_id,
                response.content_hash,
            )
        self.summary.created["response"] += len(created)

    def rater(self, kind: str, label: str) -> Rater:
        key = (kind, label)
        if key not in self.raters:
            self.raters[key], _ = Rater.objects.get_or_create(kind=kind, label=label)
        return self.raters[key]

    def judge(self, label: str) -> Judge:
        if label not in self.judges:
            rater = self.rater(Rater.Kind.JUDGE, label)
            self.judges[label], _ = Judge.objects.get_or_create(rater=rater, defaults={"kind": Judge.Kind.IMPORTED})
        return self.judges[label]

    def canonical_pair(self, rec: _Record) -> tuple[tuple[int, int, int], int] | None:
        """(first, second, prompt) response and prompt pks of a vote, and its value in canonical orientation."""
        d = rec.data
        a, b = self.responses.get(d["a"]), self.responses.get(d["b"])
        if a is None:
            self.error(rec.line, "response_a", f"response {d['a']!r} is not defined")
        if b is None:
            self.error(rec.line, "response_b", f"response {d['b']!r} is not defined")
        if a is None or b is None:
            return None
        if a[1] != b[1]:
            self.error(
                rec.line, "response_b", f"response {d['b']!r} answers a different prompt than response_a {d['a']!r}"
            )
            return None
        if a[0] < b[0]:
            return (a[0], b[0], a[1]), d["value"]
        return (b[0], a[0], a[1]), -d["value"]  # the file's A is our second response: flip to canonical

    def comparison_pks(self, pairs: set[tuple[int, int, int]]) -> dict[tuple[int, int], int]:
        """Comparison pks for canonical response pairs, creating the missing ones (a few queries per chunk)."""

        def existing() -> dict[tuple[int, int], int]:
            rows = Comparison.objects.filter(
                study=self.study, response_first_id__in={f for f, _, _ in pairs}
            ).values_list("response_first_id", "response_second_id", "pk")
            return {(f, sec): pk for f, sec, pk in rows}

        found = existing()
        missing = [(f, sec, p) for f, sec, p in pairs if (f, sec) not in found]
        if missing:
            Comparison.objects.bulk_create(
                [
                    Comparison(study=self.study, prompt_id=p, response_first_id=f, response_second_id=sec)
                    for f, sec, p in missing
                ],
                ignore_conflicts=True,
            )
            found = existing()
        return found

    def flush_votes(self, recs: list[_Record]) -> None:
        """Ratings and judgments of one chunk, in bulk: a handful of queries whatever the chunk's size."""
        self.load_responses([r.data["a"] for r in recs] + [r.data["b"] for r in recs])
        resolved = []
        for rec in recs:
            pair = self.canonical_pair(rec)
            if pair is not None:
                resolved.append((rec, pair[0], pair[1]))
        if not resolved:
            return
        comparisons = self.comparison_pks({key for _, key, _ in resolved})
        votes = [(rec, comparisons[key[:2]], value) for rec, key, value in resolved]
        self.save_ratings([v for v in votes if v[0].kind == "rating"])
        self.save_judgments([v for v in votes if v[0].kind == "judgment"])

    def save_ratings(self, votes: list[tuple[_Record, int, int]]) -> None:
        if not votes:
            return
        rater_pks = {rec.data["label"]: self.rater(Rater.Kind.EXTERNAL, rec.data["label"]).pk for rec, _, _ in votes}
        keys = {(comparison, rater_pks[rec.data["label"]]) for rec, comparison, _ in votes}

        def existing_assignments() -> dict[tuple[int, int], tuple[int, bool]]:
            rows = Assignment.objects.filter(
                comparison_id__in={c for c, _ in keys}, rater_id__in=set(rater_pks.values())
            ).values_list("comparison_id", "rater_id", "pk", "both_unacceptable")
            return {(c, r): (pk, flag) for c, r, pk, flag in rows}

        assignments = existing_assignments()
        missing = keys - assignments.keys()
        if missing:
            Assignment.objects.bulk_create(
                [
                    Assignment(
                        study=self.study,
                        comparison_id=c,
                        rater_id=r,
                        status=Assignment.Status.SUBMITTED,
                        purpose=Assignment.Purpose.IMPORTED,
                    )
                    for c, r in missing
                ],
                ignore_conflicts=True,
            )
            assignments = existing_assignments()
        flagged = {
            assignments[(c, rater_pks[rec.data["label"]])][0]
            for rec, c, _ in votes
            if rec.data["both_unacceptable"] and not assignments[(c, rater_pks[rec.data["label"]])][1]
        }
        if flagged:
            Assignment.objects.filter(pk__in=flagged).update(both_unacceptable=True)
        stored = {
            (a, c): (value, rationale)
            for a, c, value, rationale in Rating.objects.filter(
                assignment_id__in={pk for pk, _ in assignments.values()}
            ).values_list("assignment_id", "criterion_id", "value", "rationale")
        }
        new: dict[tuple[int, int], Rating] = {}
        for rec, comparison, value in votes:
            d = rec.data
            assignment = assignments[(comparison, rater_pks[d["label"]])][0]
            key = (assignment, d["criterion"].pk)
            known = stored.get(key) or ((new[key].value, new[key].rationale) if key in new else None)
            if known is None:
                new[key] = Rating(
                    assignment_id=assignment, criterion=d["criterion"], value=value, rationale=d["rationale"]
                )
            elif known == (value, d["rationale"]):
                self.summary.unchanged["rating"] += 1
            else:
                self.error(
                    rec.line,
                    "value",
                    f"rater {d['label']!r} already has a different rating of this pair on {d['criterion'].key!r}",
                )
        Rating.objects.bulk_create(new.values())
        self.summary.created["rating"] += len(new)

    def save_judgments(self, votes: list[tuple[_Record, int, int]]) -> None:
        if not votes:
            return
        judge_pks = {rec.data["label"]: self.judge(rec.data["label"]).pk for rec, _, _ in votes}
        stored = {
            (j, c, k): (value, flag, rationale)
            for j, c, k, value, flag, rationale in Judgment.objects.filter(
                judge_id__in=set(judge_pks.values()), comparison_id__in={c for _, c, _ in votes}
            ).values_list("judge_id", "comparison_id", "criterion_id", "value", "both_unacceptable", "rationale")
        }
        new: dict[tuple[int, int, int], Judgment] = {}
        for rec, comparison, value in votes:
            d = rec.data
            key = (judge_pks[d["label"]], comparison, d["criterion"].pk)
            pending = new.get(key)
            known = stored.get(key) or (
                (pending.value, pending.both_unacceptable, pending.rationale) if pending is not None else None
            )
            if known is None:
                new[key] = Judgment(
                    judge_id=key[0],
                    comparison_id=comparison,
                    criterion=d["criterion"],
                    value=value,
                    both_unacceptable=d["both_unacceptable"],
                    rationale=d["rationale"],
                )
            elif known == (value, d["both_unacceptable"], d["rationale"]):
                self.summary.unchanged["judgment"] += 1
            else:
                self.error(
                    rec.line,
                    "value",
                    f"judge {d['label']!r} already has a different judgment of this pair on {d['criterion'].key!r}",
                )
        Judgment.objects.bulk_create(new.values())
        self.summary.created["judgment"] += len(new)

    # ---- driver -------------------------------------------------------------------------------
    def run(self, records: Iterator[_Record]) -> None:
        chunk: list[_Record] = []
        for rec in records:
            parsed = self.parse(rec)
            if parsed is not None:
                chunk.append(parsed)
            if len(chunk) >= CHUNK_LINES:
                self.flush(chunk)
                chunk = []
        self.flush(chunk)


def import_study_file(
    *,
    study: Study,
    stream: BinaryIO,
    filename: str,
    actor: AbstractBaseUser | None = None,
    file_format: str | None = None,
) -> ImportSummary:
    """Import one JSONL or CSV file into `study`, all or nothing. Raises ImportFailed listing every error."""
    file_format = file_format or ("csv" if filename.lower().endswith(".csv") else "jsonl")
    importer = _Importer(
        study=study,
        filename=filename,
        max_text_chars=settings.IMPORT_MAX_TEXT_CHARS,
        max_errors=settings.IMPORT_MAX_ERRORS,
    )
    records = importer.records_from_csv(stream) if file_format == "csv" else importer.records_from_jsonl(stream)
    truncated = False
    try:
        with transaction.atomic():
            try:
                importer.run(records)
            except _TooManyErrors:
                truncated = True
            if importer.issues:
                raise _Rollback
            audit_record(actor=actor, action="study.import", study=study, obj=study, data=importer.summary.as_dict())
    except _Rollback:
        raise ImportFailed(importer.issues, truncated=truncated) from None
    return importer.summary


def study_create_and_import(
    *,
    slug: str,
    title: str,
    scale_points: int,
    overlap_k: int,
    stream: BinaryIO,
    filename: str,
    actor: AbstractBaseUser | None = None,
) -> tuple[Study, ImportSummary]:
    """A new study and its first file in one transaction: a rejected file leaves no study behind."""
    with transaction.atomic():
        study = study_create(slug=slug, title=title, scale_points=scale_points, overlap_k=overlap_k, owner=actor)
        summary = import_study_file(study=study, stream=stream, filename=filename, actor=actor)
    return study, summary
