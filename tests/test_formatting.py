"""Markdown splitting: size limits, whole fences, nothing lost."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.formatting import fences_balanced, split_markdown
from bot.signoff import SIGN_OFF


def words(text: str) -> list[str]:
    without_fences = re.sub(r"^ {0,3}(`{3,}|~{3,}).*$", "", text, flags=re.MULTILINE)
    return re.findall(r"\S+", without_fences)


def test_short_text_is_one_part() -> None:
    assert split_markdown("hello\n\nworld", 2000) == ["hello\n\nworld"]


def test_long_code_block_is_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})  # step {i}" for i in range(400))
    text = f"Here is the plan.\n\n```python\n{code}\n```\n\n{SIGN_OFF}"
    parts = split_markdown(text, 2000)
    assert len(parts) > 3
    assert all(len(p) <= 2000 for p in parts)
    assert all(fences_balanced(p) for p in parts)
    code_parts = [p for p in parts if "print(" in p]
    assert all(p.lstrip().startswith("```python") or "```python" in p for p in code_parts)
    assert parts[-1].endswith(SIGN_OFF) and sum(p.count(SIGN_OFF) for p in parts) == 1
    assert words("\n".join(parts)) == words(text)


def test_a_30000_character_answer_arrives_whole() -> None:
    prose = "\n\n".join(f"Paragraph {i}. " + "Latency budgets matter. " * 40 for i in range(22))
    code = "\n".join(f"row_{i} = compute({i})" for i in range(400))
    text = f"{prose}\n\n```python\n{code}\n```\n\n{SIGN_OFF}"
    assert len(text) > 30_000
    for limit in (2000, 12_000):
        parts = split_markdown(text, limit)
        assert all(len(p) <= limit for p in parts)
        assert all(fences_balanced(p) for p in parts)
        assert words("\n\n".join(parts)) == words(text)


def test_unclosed_fence_from_the_model_is_closed() -> None:
    parts = split_markdown("Look:\n\n```sql\nSELECT 1;\n" + "SELECT 2;\n" * 300, 500)
    assert all(fences_balanced(p) for p in parts)


blocks = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="`~"),
        min_size=1,
        max_size=600,
    ),
    st.builds(
        lambda lang, lines: f"```{lang}\n" + "\n".join(lines) + "\n```",
        st.sampled_from(["", "python", "sql"]),
        st.lists(st.text(alphabet="abc xyz()=_0123456789", max_size=120), max_size=60),
    ),
)


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(blocks, min_size=1, max_size=8), limit=st.sampled_from([100, 500, 2000]))
def test_every_part_fits_and_closes_its_fences(parts: list[str], limit: int) -> None:
    text = "\n\n".join(parts)
    out = split_markdown(text, limit)
    assert all(len(p) <= limit for p in out)
    assert all(fences_balanced(p) for p in out)
    assert words("\n\n".join(out)) == words(text) or not text.strip()
