"""Reading problem files: JSON Lines, one object per line. A reader only: nothing is written anywhere."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flexlearn.errors import ConfigError, InputError
from flexlearn.tasks.base import Problem

# A field that identifies the record; used as Problem.id when present.
_ID_KEY = "id"

# The longest question accepted, in characters (about 12,500 tokens): every call about a problem carries its
# question, so one runaway record would be sent whole in every prompt. FLEX_MAX_QUESTION_CHARS changes it.
DEFAULT_MAX_QUESTION_CHARS = 50_000


def max_question_chars() -> int:
    """The cap on a question's length: FLEX_MAX_QUESTION_CHARS when set, else `DEFAULT_MAX_QUESTION_CHARS`."""
    value = os.environ.get("FLEX_MAX_QUESTION_CHARS", "").strip()
    if not value:
        return DEFAULT_MAX_QUESTION_CHARS
    try:
        cap = int(value)
    except ValueError:
        cap = 0
    if cap <= 0:
        raise ConfigError(f"FLEX_MAX_QUESTION_CHARS must be a positive whole number of characters, got {value!r}")
    return cap


def check_question_length(question: str, *, path: str | None = None, line: int | None = None) -> None:
    """InputError when `question` is longer than `max_question_chars()`, saying how to allow it."""
    cap = max_question_chars()
    if len(question) > cap:
        raise InputError(
            f"the question is {len(question):,} characters, over the limit of {cap:,} "
            "(set FLEX_MAX_QUESTION_CHARS to allow longer questions)",
            path=path,
            line=line,
        )


def read_jsonl(path: str | Path, *, required: Sequence[str] = ("question", "answer")) -> list[dict[str, Any]]:
    """The objects in a JSONL file, in order, as parsed (values are not converted).

    Blank lines are skipped and the last line needs no newline. Each key in `required` must hold a non-empty
    string or a number. Raises InputError naming the file and line for: a missing or unreadable file, bytes that
    are not UTF-8, a line that is not JSON or not an object, a bad required field; and for a file with no records.
    """
    records = read_records(path)
    for line, record in records:
        for key in required:
            field_text(record, (key,), path, line)
    return [record for _, record in records]


def load_problems(
    path: str | Path,
    *,
    question_key: str | Sequence[str] = "question",
    answer_key: str = "answer",
    accept_lists: bool = False,
    check: Callable[[Problem], str | None] | None = None,
) -> list[Problem]:
    """The problems in a JSONL file.

    `question_key` may list alternatives, the first present wins (MATH-500 and AIME25 files say "problem" where
    others say "question"). Numbers are accepted for the question and answer and turned into strings (AIME answers
    are ints). With `accept_lists`, the answer may be a non-empty JSON list of accepted answers: `Problem.answer`
    is then the first and `meta["accepted"]` holds them all.

    `Problem.id` is the record's "id" field as a string when present, otherwise "<file name>:<line number>". Every
    other field of the record is kept in `Problem.meta` (e.g. MATH-500's "solution", "level", "subject").

    `check`, when given, sees each problem as it is built and returns None or what is wrong with it; a task uses it
    for rules of its own (e.g. GSM8K answers must hold a number) so the error can name the line.
    Raises InputError naming the file and line on bad input (see `read_jsonl`), on duplicate ids and on a
    problem that `check` rejects.
    """
    question_keys = (question_key,) if isinstance(question_key, str) else tuple(question_key)
    problems: list[Problem] = []
    first_line_of: dict[str, int] = {}
    for line, record in read_records(path):
        question_used, question = field_text(record, question_keys, path, line)
        check_question_length(question, path=str(path), line=line)
        meta = {key: value for key, value in record.items() if key not in (question_used, answer_key, _ID_KEY)}
        if accept_lists and isinstance(record.get(answer_key), list):
            accepted = _accepted_answers(record[answer_key], answer_key, path, line)
            answer = accepted[0]
            meta["accepted"] = accepted
        else:
            _, answer = field_text(record, (answer_key,), path, line)
        if _ID_KEY in record:
            _, problem_id = field_text(record, (_ID_KEY,), path, line)
        else:
            problem_id = f"{Path(path).name}:{line}"
        if problem_id in first_line_of:
            raise InputError(
                f"duplicate id {problem_id!r} (first used on line {first_line_of[problem_id]})",
                path=str(path),
                line=line,
            )
        first_line_of[problem_id] = line
        problem = Problem(id=problem_id, question=question, answer=answer, meta=meta)
        if check is not None and (complaint := check(problem)) is not None:
            raise InputError(complaint, path=str(path), line=line)
        problems.append(problem)
    return problems


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line of a JSONL file."""
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=where) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a JSONL file", path=where) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path=where) from None
    # Split bytes on "\n" only: str.splitlines would also split inside JSON strings holding U+2028 and friends.
    raw_lines = data.split(b"\n")
    if raw_lines[0].startswith(b"\xef\xbb\xbf"):
        raw_lines[0] = raw_lines[0][3:]  # a UTF-8 byte-order mark, as some Windows editors write
    records: list[tuple[int, dict[str, Any]]] = []
    for line, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-8 (byte {exc.start + 1} of the line)", path=where, line=line) from None
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=where, line=line) from None
        except RecursionError:
            raise InputError("JSON nested too deeply", path=where, line=line) from None
        if "\\u" in text.lower() and not _encodable(value):
            # A lone surrogate escape ("\ud800") parses, then fails in the HTTP client at the first model call.
            raise InputError(
                "holds an invalid Unicode escape (a lone surrogate such as \\ud800)", path=where, line=line
            )
        if not isinstance(value, dict):
            raise InputError(f"expected a JSON object, got {_json_type(value)}", path=where, line=line)
        records.append((line, value))
    if not records:
        raise InputError("no records: the file is empty or holds only blank lines", path=where)
    return records


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def field_text(record: dict[str, Any], keys: Sequence[str], path: str | Path, line: int) -> tuple[str, str]:
    """(the first of `keys` present, its value as text). The value must be a non-empty string or a number."""
    key = next((key for key in keys if key in record), None)
    if key is None:
        wanted = " or ".join(repr(key) for key in keys)
        raise InputError(f"missing field {wanted}", path=str(path), line=line)
    text = _scalar_text(record[key])
    if text is None:
        raise InputError(
            f"field {key!r} must be a non-empty string or a number, got {_json_type(record[key])}",
            path=str(path),
            line=line,
        )
    return key, text


def _accepted_answers(values: list[Any], key: str, path: str | Path, line: int) -> list[str]:
    """A list of accepted answers as strings; it must be non-empty and hold only non-empty strings or numbers."""
    texts = [_scalar_text(value) for value in values]
    if not texts or any(text is None for text in texts):
        raise InputError(
            f"field {key!r} holds a list, which must be non-empty and hold only non-empty strings or numbers",
            path=str(path),
            line=line,
        )
    return [text for text in texts if text is not None]


def _scalar_text(value: Any) -> str | None:
    """A non-empty string, or a finite number as a string; None for anything else."""
    # bool is a subclass of int, but `true` is almost certainly a mistake for a question or an answer.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    # Python's json reads NaN and Infinity, which no answer can be.
    if isinstance(value, float):
        return str(value) if math.isfinite(value) else None
    if isinstance(value, str) and value.strip():
        return value
    return None


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
