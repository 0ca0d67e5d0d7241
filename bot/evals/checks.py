"""Rubric checks decided by code: pure functions from the answers to pass/fail.

Each check reads the answer as the core returned it (Markdown, signed off). They are
deliberately simple and explainable, and each can fail: a parrot ("Noted.") fails
most of them. The answer is untrusted model output: it is only searched, never run,
and every scan is bounded by MAX_SCAN characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.evals.scenarios import Scenario
from bot.signoff import SIGN_OFF

MAX_SCAN = 200_000  # characters of an answer the checks look at

_ALTERNATIVE_MARKERS = re.compile(
    r"\b(?:option|alternative|approach|choice|path)\s*(?:[a-d1-4]\b|#\d)"
    r"|\b(?:alternatives?|options?)\b\s*[:(]"
    r"|\bvs\.?\s|\bversus\b|\binstead of\b|\brather than\b|\bor else\b|\beither\b",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,2}[.)]|#{2,4})\s+\S", re.MULTILINE)
_TRADEOFF_MARKERS = (
    r"\btrade[- ]?offs?\b",
    r"\bpros?\b",
    r"\bcons?\b",
    r"\bdownsides?\b",
    r"\bupsides?\b",
    r"\bdrawbacks?\b",
    r"\bat the (?:cost|price|expense) of\b",
    r"\bcosts? (?:you|more|less)\b",
    r"\bin exchange for\b",
    r"\bwhereas\b",
    r"\bbut\b",
    r"\bhowever\b",
    r"\bsimpler\b",
    r"\bmore complex(?:ity)?\b",
    r"\boperational (?:burden|cost|overhead)\b",
)
_TRADEOFF = [re.compile(p, re.IGNORECASE) for p in _TRADEOFF_MARKERS]
_MASS_PING = re.compile(
    r"<!(?:channel|here|everyone)(?:\|[^>]*)?>|<!subteam\^|<@&\d+>|(?<![\w`])@(?:everyone|here)\b"
)
_SENTENCE_END = re.compile(r"([\n.?!])")
# Path-like tokens: a/b/c.ext, a backticked file.ext, or a GitHub blob link's path.
_BLOB_LINK = re.compile(r"https?://github\.com/[\w.-]+/[\w.-]+/blob/[^/\s)]+/([^\s)#?>\]]+)")
# Every repeat is bounded, so a hostile answer cannot make a scan slow.
_PATHLIKE = re.compile(
    r"(?<![\w/.:-])((?:[\w.-]{1,100}/){1,20}[\w.-]{1,100}\.[A-Za-z0-9]{1,8})(?![\w/])"
)
_BACKTICKED_FILE = re.compile(
    r"`([\w./-]{1,300}\.[A-Za-z0-9]{1,8})(?:[:#]L?\d{1,7}(?:-L?\d{1,7})?)?`"
)
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One rubric line: its name, whether it passed, and why."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        """The JSON form written to --out."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def _body(answer: str) -> str:
    """The answer without the sign-off line, bounded."""
    return answer[:MAX_SCAN].replace(SIGN_OFF, "")


def _normalise(text: str) -> str:
    """Lower case with hyphens, underscores and runs of spaces folded, for phrase matching."""
    return " " + re.sub(r"[\s_\-‐–—/]+", " ", text.lower()) + " "


def words(answer: str) -> int:
    """How many words the answer has, sign-off excluded."""
    return len(_body(answer).split())


def check_alternatives(answer: str) -> CheckResult:
    """Passes when the answer lays out at least two options, not one prescription."""
    body = _body(answer)
    markers = len(_ALTERNATIVE_MARKERS.findall(body))
    items = len(_LIST_ITEM.findall(body))
    passed = markers >= 2 or (markers >= 1 and items >= 2)
    return CheckResult(
        "alternatives", passed, f"{markers} option marker(s), {items} list item(s) or heading(s)"
    )


def check_tradeoffs(answer: str) -> CheckResult:
    """Passes when at least two different trade-off phrasings appear."""
    body = _body(answer)
    kinds = sum(1 for pattern in _TRADEOFF if pattern.search(body))
    return CheckResult("tradeoffs", kinds >= 2, f"{kinds} kind(s) of trade-off wording")


def check_clarifying_question(answer: str) -> CheckResult:
    """Passes when the answer asks the user something (a real question, not the sign-off)."""
    parts = _SENTENCE_END.split(_URL.sub(" ", _body(answer)))
    # split() alternates text and separator: a question is text of 8+ characters before "?".
    questions = [
        t
        for t, sep in zip(parts[::2], parts[1::2], strict=False)
        if sep == "?" and len(t.strip()) >= 8
    ]
    return CheckResult(
        "clarifying_question", bool(questions), f"{len(questions)} question(s) asked"
    )


def check_pitfall(answer: str, group: list[str]) -> CheckResult:
    """Passes when the answer names the planted pitfall in any of its phrasings."""
    text = _normalise(_body(answer))
    hit = next((term for term in group if _normalise(term).strip() in text), None)
    name = f"pitfall: {group[0]}"
    return CheckResult(name, hit is not None, f"named as {hit!r}" if hit else "not named")


def cited_paths(answer: str) -> set[str]:
    """Repository paths an answer cites: GitHub blob links, a/b/c.ext tokens, `file.ext`."""
    body = _body(answer)
    found = {m.group(1) for m in _BLOB_LINK.finditer(body)}
    without_urls = _URL.sub(" ", body)
    found |= {m.group(1) for m in _PATHLIKE.finditer(without_urls)}
    found |= {m.group(1) for m in _BACKTICKED_FILE.finditer(without_urls)}
    return {p.strip("./").rstrip(".,;:") for p in found if p.strip("./")}


def check_cited_paths(answer: str, files: set[str], minimum: int) -> CheckResult:
    """Passes when at least `minimum` fixture paths are cited and no cited path is invented.

    A bare file name (`config.yaml`) counts when exactly that name exists somewhere.
    """
    names = {f.rsplit("/", 1)[-1] for f in files}
    real, invented = set(), set()
    for path in cited_paths(answer):
        if path in files or ("/" not in path and path in names):
            real.add(path)
        elif "/" in path:
            invented.add(path)
    passed = len(real) >= minimum and not invented
    detail = f"{len(real)} fixture path(s) cited (need {minimum})"
    if invented:
        detail += f"; not in the repository: {', '.join(sorted(invented)[:5])}"
    return CheckResult("cited_paths", passed, detail)


def check_length(answer: str, min_words: int, max_words: int) -> CheckResult:
    """Passes when the answer's word count is within the budget."""
    count = words(answer)
    return CheckResult(
        "length", min_words <= count <= max_words, f"{count} words (budget {min_words}-{max_words})"
    )


def check_no_mass_pings(answer: str) -> CheckResult:
    """Passes when no @channel/@here/@everyone or group mention is written."""
    found = _MASS_PING.findall(answer[:MAX_SCAN])
    return CheckResult(
        "no_mass_pings", not found, f"found {found[:3]}" if found else "no mass mention"
    )


def check_sign_off_once(answer: str) -> CheckResult:
    """Passes when the answer ends with the sign-off and holds it exactly once."""
    count = answer.count(SIGN_OFF)
    passed = count == 1 and answer.rstrip().endswith(SIGN_OFF)
    return CheckResult("sign_off_once", passed, f"sign-off {count} time(s), at the end: {passed}")


def run_checks(scenario: Scenario, answers: list[str]) -> list[CheckResult]:
    """Every enabled check of the scenario against its answers (one per user turn).

    The clarifying question is looked for in the first answer (a vague question
    should be met with one before any advice); the rest judge the last answer,
    except cited paths, which count over the whole conversation.
    """
    checks = scenario.checks
    last = answers[-1] if answers else ""
    first = answers[0] if answers else ""
    results: list[CheckResult] = []
    if checks.alternatives:
        results.append(check_alternatives(last))
    if checks.tradeoffs:
        results.append(check_tradeoffs(last))
    if checks.clarifying_question:
        results.append(check_clarifying_question(first))
    results.extend(check_pitfall(last, group) for group in checks.pitfalls)
    if scenario.repo is not None and checks.min_cited_paths:
        results.append(
            check_cited_paths(
                "\n\n".join(answers), set(scenario.repo.files), checks.min_cited_paths
            )
        )
    results.append(check_length(last, checks.min_words, checks.max_words))
    if checks.no_mass_pings:
        results.append(check_no_mass_pings("\n\n".join(answers)))
    if checks.sign_off_once:
        each = [check_sign_off_once(a) for a in answers] or [check_sign_off_once("")]
        failed = [r for r in each if not r.passed]
        results.append(failed[0] if failed else each[-1])
    return results
