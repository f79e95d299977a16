"""Prompt templates live as text files in `flexlearn/prompts/`; `{{name}}` marks a slot.

A slot syntax of double braces keeps LaTeX and JSON braces in templates literal.
"""

from __future__ import annotations

import contextlib
import re
from functools import cache
from importlib import resources

from flexlearn.experience import Experience
from flexlearn.models.base import Message, Prompt

_SLOT = re.compile(r"\{\{(\w+)\}\}")


@cache
def load(name: str) -> str:
    return resources.files("flexlearn.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8")


def fill(name: str, **values: str) -> str:
    template = load(name)

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"prompt template {name!r} needs a value for {{{{{key}}}}}")
        return values[key]

    return _SLOT.sub(sub, template)


def build(agent: str, *, stop: list[str] | None = None, **values: str) -> Prompt:
    """The agent's chat messages (`<agent>_system`, `<agent>_user`) and base-model text (`<agent>_completion`)."""
    return Prompt(
        messages=[
            Message("system", fill(f"{agent}_system", **values).strip()),
            Message("user", fill(f"{agent}_user", **values).strip()),
        ],
        completion=completion_cue(fill(f"{agent}_completion", **values)),
        stop=stop or [],
    )


def completion_cue(text: str) -> str:
    """A base model continues exactly where the text stops: end on the cue ("A:", "Feedback:"), not on a newline
    after it (the model would start a new example) nor on a space (it splits the next token badly)."""
    return text.rstrip()


def shorten(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text: the tail of an attempt holds its final answer."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return text[:head] + " [...] " + text[-(limit - head) :]


_WORDS = re.compile(r"[a-z0-9'-]+")
COPY_SHINGLE = 4  # words in a row shared with a prompt's worked example that make a reply a copy of it


def squash(text: str) -> str:
    """`text` as its lowercase words separated by single spaces: for asking whether one text contains another
    whatever the spacing, case and punctuation."""
    return " ".join(_WORDS.findall(text.lower()))


def _shingles(text: str, n: int = COPY_SHINGLE) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@cache
def _example_shingles(agent: str) -> frozenset[tuple[str, ...]]:
    """Word runs of the worked examples an agent's prompts show: `<agent>_completion` (its lines without a slot,
    after the first, the instruction) and `<agent>_example` when there is one."""
    lines = load(f"{agent}_completion").splitlines()[1:]
    example = "\n".join(line for line in lines if "{{" not in line)
    with contextlib.suppress(FileNotFoundError):
        example += "\n" + load(f"{agent}_example")
    return frozenset(_shingles(example))


def copies_example(text: str, agent: str) -> bool:
    """Whether `text`, written by the model playing `agent`, repeats a run of words from that agent's worked
    example ("recall the irregular form with a vowel change" said of a number): a small model copies the example
    in its prompt onto other words, and such a text says nothing about the problem at hand."""
    return bool(_shingles(text) & _example_shingles(agent))


# Text from a library is data, never instructions of ours: the fence's own markers and look-alike headers are
# neutralised inside it, so an entry (an imported one above all) cannot close its fence or pose as our prompt.
_FENCE_BREAK = re.compile(r"</?\s*experience\b", re.IGNORECASE)


def fence(text: str) -> str:
    return _FENCE_BREAK.sub(lambda m: m.group().replace("<", "\u2039"), text)


def origin_of(e: Experience) -> str:
    """Where an entry came from, as a model is told: learned here, or the import and its file."""
    source = e.provenance.source or "learned"
    if source == "learned":
        return "learned here"
    return f"{source} from {e.provenance.origin}" if e.provenance.origin else source
