"""Template hygiene that no page test would notice until a person reads the page."""

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_every_template_comment_closes_on_its_own_line():
    """Django's {# #} comment is one line only: an unclosed one is printed on the page as text (the pair page
    showed its criteria's developer note to clinicians). Longer notes take {% comment %}."""
    unclosed = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\{#(?!.*#\})", line):
                unclosed.append(f"{path.relative_to(TEMPLATES)}:{number}")
    assert not unclosed, unclosed
