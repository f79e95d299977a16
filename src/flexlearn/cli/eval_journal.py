"""What `flex eval --out DIR` has finished so far, kept as it goes, so that an evaluation of hours interrupted at
any moment (a crash, a reboot, Ctrl-C) continues when the same command is run again.

Beside the results, DIR holds `eval-state.json` (the evaluation's key: task, problems, models, settings, library
and its version; and whether it finished) and `items-done.jsonl`, one line per finished item, flushed as it
finishes. Run again with the same key and unfinished, the finished items are kept and only the rest evaluated;
with another key, or after a finished run, it starts afresh (and says so when it drops unfinished items).
`flex demo` keeps its evaluation the same way, in its run folder, with the demo's settings as the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from flexlearn.atomic import write_atomic
from flexlearn.library import Library
from flexlearn.records import ItemRecord

STATE = "eval-state.json"
ITEMS_DONE = "items-done.jsonl"

Done = dict[tuple[str, str, int], ItemRecord]


def load_items(path: Path) -> Done:
    """The items an interrupted evaluation finished, by (mode, problem id, repeat); a line cut by the interruption
    is skipped."""
    done: Done = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = ItemRecord.model_validate_json(line)
        except ValueError:
            continue
        done[(item.mode, item.problem_id, item.repeat)] = item
    return done


def unfinished(out_dir: Path, key: dict[str, Any]) -> bool:
    """Whether `out_dir` holds an evaluation of this key that did not finish (one `EvalJournal` continues)."""
    state = read_state(out_dir)
    return state.get("key") == key and state.get("finished") is False


def read_state(out_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((out_dir / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def library_version(library: Library | None) -> int | None:
    """The library's latest change (its newest event's number), None without a library: flex items answered
    with another version of it are not reused."""
    return None if library is None else library.revision()


class EvalJournal:
    """Open with the evaluation's key: `done` holds what an unfinished run of the same key finished; `record`
    appends an item as it finishes; `finish` marks the run done once its results are written. Without a folder
    (`flex eval` without --out) it keeps nothing."""

    def __init__(self, out_dir: Path | None, key: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.key = key
        self.dropped = 0
        self.done: Done = {}
        self._file: IO[str] | None = None

    def __enter__(self) -> EvalJournal:
        if self.out_dir is None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        items = self.out_dir / ITEMS_DONE
        if unfinished(self.out_dir, self.key):
            self.done = load_items(items)
            self._file = items.open("a", encoding="utf-8")
        else:
            if read_state(self.out_dir).get("finished") is False:
                self.dropped = len(load_items(items))
            self._file = items.open("w", encoding="utf-8")
            write_atomic(self.out_dir / STATE, json.dumps({"key": self.key, "finished": False}, indent=1))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def record(self, item: ItemRecord) -> None:
        if self._file is None or (item.mode, item.problem_id, item.repeat) in self.done:
            return
        self._file.write(item.model_dump_json() + "\n")
        self._file.flush()

    def finish(self) -> None:
        if self.out_dir is None:
            return
        write_atomic(self.out_dir / STATE, json.dumps({"key": self.key, "finished": True}, indent=1))
