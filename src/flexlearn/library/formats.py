"""Portable library formats: flexlearn's own JSON export, import of it and of the FLEX reference libraries,
and a Markdown dump for people. (One file over 400 lines: export and the strict importer are two sides of one
format and must change together.)

flexlearn JSON (`export_json`), one UTF-8 JSON object:

- `format`: always `"flexlearn.library"`; `version`: `1`, raised only on an incompatible change.
- `exported_at`: when the file was written, ISO 8601 with time zone.
- `stats`: `Library.stats()` at export time (totals by zone, level and event action), for a quick look.
- `experiences`: every experience in insertion order, as `Experience.to_dict()` gives it:
  `id`; `zone` (`golden`: what worked, `warning`: what failed and why); `level` (`principle`, `pattern`,
  `case`, most general first); `title`; `content`; `examples` (up to 5 strings); `parent_id` (the id of a
  more general experience, or null); `provenance` (`task`, `problem_ids`, `model`: the model that wrote it,
  `actor`: the model or agent whose attempts it came from, `run_id`, `source`: `learned`, `manual` or
  `imported:<format>`; for an imported entry `origin`, the file's name, and `claimed`, what that file said
  about the entry: its own provenance and counters); the counters `retrieved`, `helped`, `hurt`;
  `created_at`, `updated_at` (Unix seconds); and `status` (`active`, or `quarantined`: imported and not yet
  approved, never retrieved).
- `events`: the library's append-only log, oldest first, one object per change: `seq`, `action` (`add`,
  `merge`, `discard`, `edit`, `delete`, `import`), `experience_id`, `reason`, `run_id`, `problem_id`,
  `candidate`, `before`, `after` (experience objects as above, or null) and `created_at`.

`import_file` reads that format back (experiences only: the log describes the library it came from, and
an id already present is skipped) and the FLEX reference format (github.com/GenSI-THUAIR/FLEX, `exps/*.json`):
`{"version": "2.0", "library": {"golden": [...], "warning": [...], "mixed": [...]}}`. Each reference entry
becomes a principle (its `method`), a pattern per rule (with the rule's examples) under that principle, and
a case (its `revised_trajectory`) under the first pattern (under the principle when there are no rules), all
titled with the entry's `problem_category`. `golden` and `warning` keep their zone; `mixed` entries go to
golden, marked `imported:flex-reference:mixed` in `provenance.source`. `usage_count` is kept in the
principle's `provenance.claimed`; `priority` and `last_used` have no counterpart and are dropped.

An imported file is untrusted. Types are checked strictly (nothing is coerced; a flexlearn entry is read as
`flexlearn.records.ImportedExperience`, the exported record's strict form), NaN, infinities and out-of-range
numbers are refused, each refusal naming the entry and the field; invisible control, bidi and zero-width
characters are removed, long text is cut. The entries' provenance is the import's own (`source`
`imported:<format>`, `origin` the file's name, `run_id` the import's, `model` the `--model` given), with
whatever the file claimed under `provenance.claimed`; usage counters start at 0. Unless imported with
`trust=True`, entries are quarantined: no retriever shows them to a model until `Library.approve`
(`flex library review --approve`) releases them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flexlearn.atomic import write_atomic
from flexlearn.errors import InputError, LibraryError
from flexlearn.experience import Action, Experience, Level, Provenance, Status, Zone
from flexlearn.library.experiences import MAX_EXAMPLES
from flexlearn.library.store import Library
from flexlearn.library.text import clean_text
from flexlearn.records import Count, ImportedExperience, ProvenanceClaims, problem

FORMAT = "flexlearn.library"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_TITLE = 200
MAX_CONTENT = 8000
MAX_EXAMPLE = 1000

_REFERENCE_ZONES = {"golden": Zone.GOLDEN, "warning": Zone.WARNING, "mixed": Zone.GOLDEN}
_PROVENANCE_TEXT = ("task", "model", "run_id", "source", "actor", "origin")
_COUNTERS = ("retrieved", "helped", "hurt")
# A reference entry's `usage_count`, checked as an exported entry's counters are.
_COUNT: TypeAdapter[float] = TypeAdapter(Count)


@dataclass
class ImportResult:
    """What `import_file` did: experiences added and skipped (already present), the format it recognised,
    and what it had to change on the way (truncations, entries left out)."""

    added: int = 0
    skipped: int = 0
    format: str = ""
    warnings: list[str] = field(default_factory=list)
    quarantined: int = 0  # of `added`, waiting for approval (all of them unless imported with trust)


def export_json(lib: Library, path: str | Path) -> int:
    """Write the whole library, log included, to `path` in flexlearn JSON (see the module docstring).
    The file is replaced atomically, so a reader never sees half of it. Returns the number of experiences."""
    path = Path(path)
    # One snapshot: an export taken while another process learns has every added entry its log names, and
    # stats that count what it holds.
    with lib.snapshot():
        experiences = lib.list()
        data = {
            "format": FORMAT,
            "version": VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "stats": lib.stats(),
            "experiences": [e.to_dict() for e in experiences],
            "events": [{**asdict(ev), "action": str(ev.action)} for ev in lib.events()],
        }
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))
    return len(experiences)


class _Importer:
    """One import: the file's name for messages, the warnings so far, and the checks on untrusted input."""

    def __init__(self, lib: Library, path: Path, run_id: str, source_model: str, trust: bool) -> None:
        self.lib, self.path, self.run_id, self.source_model = lib, path, run_id, source_model
        self.status = Status.ACTIVE if trust else Status.QUARANTINED
        self.result = ImportResult()

    def fail(self, message: str) -> InputError:
        return InputError(message, path=str(self.path))

    def text(self, value: Any, where: str, limit: int) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where}: expected a string, got {type(value).__name__}")
        value = clean_text(value)
        if len(value) > limit:
            self.result.warnings.append(f"{where}: cut from {len(value)} to {limit} characters")
            value = value[:limit]
        return value

    def examples(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(f"{where}: expected a list of strings, got {type(value).__name__}")
        if len(value) > MAX_EXAMPLES:
            self.result.warnings.append(f"{where}: kept {MAX_EXAMPLES} of {len(value)} examples")
        return [self.text(x, f"{where}[{i}]", MAX_EXAMPLE) for i, x in enumerate(value[:MAX_EXAMPLES])]

    def provenance(self, fmt: str, task: str, claimed: dict[str, Any]) -> Provenance:
        """The import's own provenance for an entry; what the file said about it goes under `claimed`."""
        return Provenance(
            task=task,
            model=self.source_model,
            run_id=self.run_id,
            source=f"imported:{fmt}",
            origin=self.path.name,
            claimed=claimed,
        )

    def add(self, exp: Experience) -> str:
        """Add `exp` unless an experience with its id is there already; either way return the id to link to."""
        exp.id = exp.id or exp.content_id()
        if self.lib.find(exp.id) is not None:
            self.result.skipped += 1
            return exp.id
        exp.retrieved = exp.helped = exp.hurt = 0  # counted here, from now on, not taken from the file
        exp.status = str(self.status)
        reason = f"imported from {self.path.name}"
        if self.status == Status.QUARANTINED:
            reason += " (quarantined until approved)"
        try:
            self.lib.add(exp, reason=reason, run_id=self.run_id, action=Action.IMPORT)
        except LibraryError as e:  # e.g. a parent that is not more general than its child
            raise self.fail(str(e)) from e
        self.result.added += 1
        self.result.quarantined += self.status == Status.QUARANTINED
        return exp.id

    # -- FLEX reference format ------------------------------------------------------------------------------

    def reference(self, data: dict[str, Any]) -> None:
        self.result.format = "flex-reference"
        if str(data.get("version")) != "2.0":
            self.result.warnings.append(f"reference format version {data.get('version')!r}, expected '2.0'")
        for kind, entries in data["library"].items():
            if kind not in _REFERENCE_ZONES:
                self.result.warnings.append(f"library.{kind}: unknown memory type, left out")
                continue
            if not isinstance(entries, list):
                raise self.fail(f"library.{kind}: expected a list of entries, got {type(entries).__name__}")
            for i, entry in enumerate(entries):
                self.reference_entry(entry, kind, f"library.{kind}[{i}]")

    def reference_entry(self, entry: Any, kind: str, where: str) -> None:
        if not isinstance(entry, dict):
            raise self.fail(f"{where}: expected an object, got {type(entry).__name__}")
        method, category = entry.get("method", ""), entry.get("problem_category", "")
        if isinstance(method, dict):
            # Some reference entries nest the method with a finer category than the entry's own ("math").
            category = method.get("problem_category") or category
            method = method.get("general_method", "")
        method = self.text(method, f"{where}.method", MAX_CONTENT).strip()
        if not method:
            self.result.warnings.append(f"{where}: no method, left out")
            return
        rules = entry.get("rules", [])
        if not isinstance(rules, list):
            raise self.fail(f"{where}.rules: expected a list, got {type(rules).__name__}")
        title = self.text(category, f"{where}.problem_category", MAX_TITLE).strip()
        claimed: dict[str, Any] = {}
        if "usage_count" in entry:
            try:
                claimed["usage_count"] = int(_COUNT.validate_python(entry["usage_count"]))
            except ValidationError as e:
                raise self.fail(problem(e, f"{where}.usage_count")) from None
        zone = _REFERENCE_ZONES[kind]
        fmt = "flex-reference" + (":mixed" if kind == "mixed" else "")

        def make(level: Level, content: str, examples: list[str], parent_id: str | None, claims: dict[str, Any]) -> str:
            exp = Experience(
                zone=zone,
                level=level,
                title=title or "imported",
                content=content,
                examples=examples,
                provenance=self.provenance(fmt, title, claims),
                parent_id=parent_id,
                created_at=_timestamp(entry.get("created_at")),
            )
            return self.add(exp)

        principle = make(Level.PRINCIPLE, method, [], None, claimed)
        patterns: list[str] = []
        for j, rule in enumerate(rules):
            at = f"{where}.rules[{j}]"
            if not isinstance(rule, dict):
                raise self.fail(f"{at}: expected an object with 'rule' and 'examples', got {type(rule).__name__}")
            text = self.text(rule.get("rule", ""), f"{at}.rule", MAX_CONTENT).strip()
            if text:
                patterns.append(make(Level.PATTERN, text, self.examples(rule.get("examples", []), at), principle, {}))
        trajectory = self.text(entry.get("revised_trajectory", ""), f"{where}.revised_trajectory", MAX_CONTENT)
        if trajectory.strip():
            make(Level.CASE, trajectory.strip(), [], patterns[0] if patterns else principle, {})

    # -- flexlearn JSON -------------------------------------------------------------------------------------

    def experience(self, data: Any, where: str) -> Experience:
        """One exported experience, validated strictly (`ImportedExperience`), as an import adds it: its text
        cleaned and cut, what it claims about itself (provenance, counters) under `provenance.claimed`."""
        try:
            entry = ImportedExperience.model_validate(data)
        except ValidationError as e:
            raise self.fail(problem(e, where)) from None
        claims = entry.provenance or ProvenanceClaims()
        claimed: dict[str, Any] = {
            key: self.text(value, f"{where}.provenance.{key}", MAX_TITLE)
            for key in _PROVENANCE_TEXT
            if (value := getattr(claims, key)) not in (None, "")
        }
        claimed |= {key: int(value) for key in _COUNTERS if (value := getattr(entry, key)) is not None}
        now = time.time()
        exp = Experience(
            zone=Zone(entry.zone),
            level=Level(entry.level),
            title=self.text(entry.title, f"{where}.title", MAX_TITLE),
            content=self.text(entry.content, f"{where}.content", MAX_CONTENT),
            examples=self.examples(entry.examples, f"{where}.examples"),
            provenance=self.provenance(FORMAT, claimed.get("task", ""), claimed),
            parent_id=None if entry.parent_id is None else self.text(entry.parent_id, f"{where}.parent_id", MAX_TITLE),
            id=self.text(entry.id, f"{where}.id", MAX_TITLE),
            created_at=now if entry.created_at is None else entry.created_at,
            updated_at=now if entry.updated_at is None else entry.updated_at,
        )
        exp.provenance.problem_ids = [
            self.text(p, f"{where}.provenance.problem_ids[{j}]", MAX_TITLE) for j, p in enumerate(claims.problem_ids)
        ]
        return exp

    def flexlearn(self, data: dict[str, Any]) -> None:
        self.result.format = FORMAT
        if data.get("version") != VERSION:
            raise self.fail(f"flexlearn library format version {data.get('version')!r}; this flexlearn reads 1")
        entries = data.get("experiences")
        if not isinstance(entries, list):
            raise self.fail("'experiences': expected a list")
        parsed = [self.experience(entry, f"experiences[{i}]") for i, entry in enumerate(entries)]
        known = {e.id for e in parsed if e.id}
        for exp in parsed:
            if exp.parent_id is not None and exp.parent_id not in known and self.lib.find(exp.parent_id) is None:
                self.result.warnings.append(f"{exp.id or exp.title!r}: parent {exp.parent_id!r} not found, dropped")
                exp.parent_id = None
        # Keep the file's order, but hold back an entry until its parent is in. Parents are strictly more
        # general, so a valid file needs at most one pass per level.
        pending = parsed
        while pending:
            waiting = []
            for exp in pending:
                if exp.parent_id is None or self.lib.find(exp.parent_id) is not None:
                    self.add(exp)
                else:
                    waiting.append(exp)
            if len(waiting) == len(pending):
                raise self.fail(f"experiences {[e.id for e in waiting]} are their own ancestors (a parent cycle)")
            pending = waiting


def _timestamp(value: Any) -> float:
    """Unix seconds from an ISO 8601 string (naive means UTC); now for anything else."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return time.time()
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return time.time()


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON and no library field can hold.
    raise ValueError(f"{name} is not a number JSON allows")


def read_import(path: str | Path) -> Any:
    """Read and parse a file to import, checking that it has the shape of a library, before anything is opened
    or written. InputError naming the file for a missing or unreadable file, one that is too big, not UTF-8,
    not JSON (NaN and Infinity included), nested too deeply, or of another shape."""
    path = Path(path)
    where = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a library", path=where)
        with path.open(encoding="utf-8") as f:
            data = json.load(f, parse_constant=_refuse_constant)
        # A lone surrogate escape ("\ud800") parses, but no UTF-8 file, database or HTTP request can hold it.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except FileNotFoundError as e:
        raise InputError("no such file", path=where) from e
    except IsADirectoryError as e:
        raise InputError("is a folder, expected a JSON file", path=where) from e
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=where) from e
    except UnicodeEncodeError as e:
        raise InputError(f"holds an invalid Unicode escape ({e.reason}, e.g. a lone \\ud800)", path=where) from e
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg} (column {e.colno})", path=where, line=e.lineno) from e
    except ValueError as e:
        raise InputError(f"not valid JSON: {e}", path=where) from e
    except RecursionError:
        raise InputError("not a library: JSON nested too deeply", path=where) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=where) from e
    if not (isinstance(data, dict) and (data.get("format") == FORMAT or isinstance(data.get("library"), dict))):
        raise InputError(
            f'not a library: expected a flexlearn export ({{"format": "{FORMAT}", ...}}) or a FLEX '
            'reference library ({"version": "2.0", "library": {"golden": [...], "warning": [...]}})',
            path=where,
        )
    return data


def import_file(
    lib: Library,
    path: str | Path,
    *,
    run_id: str = "import",
    source_model: str = "",
    trust: bool = False,
    data: Any = None,
) -> ImportResult:
    """Import a flexlearn JSON export or a FLEX reference library into `lib`, all or nothing.

    The file is untrusted (see the module docstring): strictly checked, cleaned, cut to length, given the
    import's provenance, and quarantined unless `trust`; each cut is noted in `warnings`. An experience
    already in the library (same id) is skipped, so importing a file twice adds nothing the second time. A file
    of any other shape raises InputError naming it, and leaves the library as it was. `data` is the file
    already read with `read_import`, to read it only once.
    """
    path = Path(path)
    if data is None:
        data = read_import(path)
    importer = _Importer(lib, path, run_id, source_model, trust)
    with lib.transaction():
        if data.get("format") == FORMAT:
            importer.flexlearn(data)
        else:
            importer.reference(data)
    return importer.result


def to_markdown(lib: Library) -> str:
    """The library as Markdown for people: a section per zone, then per level, each entry followed by the
    more concrete entries under it, indented. An entry whose parent is in the other zone is listed at the top
    of its own zone, with the parent's id."""
    experiences = lib.list()
    by_id = {e.id: e for e in experiences}
    children: dict[str, list[Experience]] = {}
    nested: set[str] = set()
    for e in experiences:
        parent = by_id.get(e.parent_id or "")
        if parent is not None and parent.zone == e.zone:
            children.setdefault(parent.id, []).append(e)
            nested.add(e.id)
    lines = ["# Experience library"]

    def render(e: Experience, depth: int) -> None:
        pad = "  " * depth
        note = f", parent `{e.parent_id}`" if e.parent_id and e.id not in nested else ""
        counts = f"retrieved {e.retrieved}, helped {e.helped}, hurt {e.hurt}{note}"
        lines.append(f"{pad}- **[{e.level}] {e.title}** `{e.id}` ({counts})")
        lines.extend(f"{pad}  {line}".rstrip() for line in e.content.splitlines())
        for x in e.examples:
            first, *rest = x.splitlines() or [""]
            lines.append(f"{pad}  - e.g. {first}".rstrip())
            lines.extend(f"{pad}    {line}".rstrip() for line in rest)
        for child in children.get(e.id, []):
            render(child, depth + 1)

    for zone in Zone:
        lines += ["", f"## {zone.capitalize()}"]
        for level in Level:
            roots = [e for e in experiences if e.zone == zone and e.level == level and e.id not in nested]
            if roots:
                lines += ["", f"### {level.capitalize()}s", ""]
                for e in roots:
                    render(e, 0)
    return "\n".join(lines) + "\n"
