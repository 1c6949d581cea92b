"""What an LLM judge is asked, how its answer is read, and how the two orders of a pair combine.

The judge sees exactly what clinicians see: the conversation, "Response 1" and "Response 2", and each
criterion's question with what makes a response better and worse. docs/judges.md is the contract.

Orientation: a *shown* value is negative when Response 1 is better; a *canonical* value is negative when
the comparison's first response is better (as ratings are stored). Pure core: no Django.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from annotations.judges.endpoint import MalformedAnswer

DEFAULT_TEMPLATE_KEY = "pairwise-json"
DEFAULT_TEMPLATE_TITLE = "Pairwise comparison, all criteria, JSON verdict"

DEFAULT_SYSTEM_PROMPT = (
    "You are an experienced licensed psychotherapist evaluating replies written to a person who is seeking "
    "mental-health support. You see two possible replies and judge them blind: you do not know who or what wrote "
    "either. Judge each criterion on its own. Do not prefer a reply because it is longer or because of the order "
    "in which it is shown."
)

DEFAULT_USER_PROMPT = """The conversation so far:
{conversation}

Two possible next replies to the help-seeker:
### Response 1
{response_1}
### Response 2
{response_2}
### End of responses

Compare the two replies on each criterion:
{criteria}

{scale_instructions}
Reply with only a JSON object with these keys: {keys}"""

# The fields a template may use; any other {field} is an error when the template is saved.
TEMPLATE_FIELDS = ("conversation", "response_1", "response_2", "criteria", "scale_instructions", "keys")

_FORMATTER = string.Formatter()

ROLE_NAMES = {"user": "Help-seeker", "assistant": "Supporter", "system": "Context"}


@dataclass(frozen=True)
class CriterionText:
    key: str
    title: str
    question: str
    better_when: str
    worse_when: str


@dataclass(frozen=True)
class Verdict:
    """A parsed answer in the shown orientation: criterion key -> value (negative = Response 1 better)."""

    values: dict[str, int]
    reason: str
    both_unacceptable: bool


def template_check(system_prompt: str, user_prompt: str) -> list[str]:
    """Problems with a template, in words (empty when it can be used)."""
    problems = []
    for name, text in (("system prompt", system_prompt), ("user prompt", user_prompt)):
        try:
            fields = {match[1] for match in _FORMATTER.parse(text) if match[1] is not None}
        except ValueError as error:
            problems.append(f"The {name} is not a valid template: {error} (write {{{{ and }}}} for literal braces).")
            continue
        unknown = sorted(f for f in fields if f not in TEMPLATE_FIELDS)
        if unknown:
            problems.append(
                f"The {name} uses unknown field(s) {', '.join('{' + f + '}' for f in unknown)}; "
                f"available: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}."
            )
    missing = [f for f in ("response_1", "response_2", "keys") if "{" + f + "}" not in user_prompt]
    if missing:
        problems.append(f"The user prompt must contain {', '.join('{' + f + '}' for f in missing)}.")
    return problems


def scale_instructions(scale_points: int) -> str:
    if scale_points == 3:
        return (
            "Scale: 3-point.\n"
            'For each criterion answer "1" if Response 1 is better, "2" if Response 2 is better, or "tie" if '
            'neither is better. Add "reason": one or two sentences. If both replies are unacceptable (unsafe or '
            'harmful), also add "both_unacceptable": true.'
        )
    half = scale_points // 2
    return (
        f"Scale: {scale_points}-point.\n"
        f"For each criterion answer an integer from -{half} to {half}: negative when Response 1 is better, positive "
        f"when Response 2 is better, 0 for a tie; the size says how much better (1 slightly, {half} much). "
        'Add "reason": one or two sentences. If both replies are unacceptable (unsafe or harmful), also add '
        '"both_unacceptable": true.'
    )


def conversation_text(messages: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(
        f"{ROLE_NAMES.get(str(m.get('role')), str(m.get('role', '')).title())}: {m.get('content', '')}"
        for m in messages
    )


def criteria_text(criteria: Sequence[CriterionText]) -> str:
    return "\n".join(
        f"- {c.key} ({c.title}): {c.question} Better when: {c.better_when} Worse when: {c.worse_when}" for c in criteria
    )


def build_messages(
    *,
    system_prompt: str,
    user_prompt: str,
    persona: str,
    conversation: Sequence[dict[str, Any]],
    response_1: str,
    response_2: str,
    criteria: Sequence[CriterionText],
    scale_points: int,
) -> list[dict[str, str]]:
    """The chat messages for one request: `criteria` are all the study's criteria (joint mode) or one."""
    fields = {
        "conversation": conversation_text(conversation),
        "response_1": response_1,
        "response_2": response_2,
        "criteria": criteria_text(criteria),
        "scale_instructions": scale_instructions(scale_points),
        "keys": json.dumps([c.key for c in criteria]),
    }
    system = system_prompt.format(**fields)
    if persona.strip():
        system = f"{persona.strip()}\n\n{system}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt.format(**fields)}]


# JSON mode where the server takes it (vLLM, OpenAI, llama.cpp); a server that refuses it is asked again
# without it (endpoint.py), and the prompt asks for JSON either way.
JSON_RESPONSE_FORMAT: dict[str, Any] = {"type": "json_object"}


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_THREE_POINT = {"1": -1, "2": 1, "tie": 0, "0": 0, "response 1": -1, "response 2": 1, "response_1": -1, "response_2": 1}


def _json_object(text: str) -> dict[str, Any]:
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    raise MalformedAnswer("no JSON object in the answer")


def _value(raw: Any, scale_points: int, key: str) -> int:
    half = scale_points // 2
    if isinstance(raw, bool):
        raise MalformedAnswer(f"{key!r}: {raw!r} is not a verdict")
    if scale_points == 3:
        if isinstance(raw, int | float) and raw in (0, 1, 2):
            return {0: 0, 1: -1, 2: 1}[int(raw)]
        if isinstance(raw, str) and raw.strip().lower() in _THREE_POINT:
            return _THREE_POINT[raw.strip().lower()]
        raise MalformedAnswer(f'{key!r}: {raw!r} is not "1", "2" or "tie"')
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text == "tie":
            return 0
        try:
            raw = int(text)
        except ValueError:
            raise MalformedAnswer(f"{key!r}: {raw!r} is not an integer from -{half} to {half}") from None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, int) or not -half <= raw <= half:
        raise MalformedAnswer(f"{key!r}: {raw!r} is not an integer from -{half} to {half}")
    return raw


def parse_verdict(text: str, *, keys: Sequence[str], scale_points: int) -> Verdict:
    """Read an answer tolerantly (code fences, text around the JSON, key case), strictly on content:
    every key must be there with a value on the scale, or MalformedAnswer says which is not."""
    answer = {str(k).strip().lower(): v for k, v in _json_object(text).items()}
    missing = [key for key in keys if key.lower() not in answer]
    if missing:
        raise MalformedAnswer(f"missing key(s) {', '.join(missing)}")
    values = {key: _value(answer[key.lower()], scale_points, key) for key in keys}
    reason = answer.get("reason", "")
    flag = answer.get("both_unacceptable", False)
    return Verdict(
        values=values,
        reason=str(reason)[:2000] if reason is not None else "",
        both_unacceptable=flag is True or (isinstance(flag, str) and flag.strip().lower() == "true"),
    )


def to_canonical(shown: int, *, left_is_first: bool) -> int:
    return shown if left_is_first else -shown


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def combine_orders(canonical_a: int, canonical_b: int) -> tuple[int, bool]:
    """(value, consistent) of one criterion judged in both orders, in canonical orientation.

    Agreeing orders (same sign, ties included) give the judgment, with the smaller strength on 5- and
    7-point scales; disagreeing ones are inconsistent and count as a tie (0).
    """
    if _sign(canonical_a) != _sign(canonical_b):
        return 0, False
    return _sign(canonical_a) * min(abs(canonical_a), abs(canonical_b)), True
