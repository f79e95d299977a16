"""How experiences sit in rows (of either backend): JSON columns, the columns every read of an entry selects, the
row -> Experience mapping, and the zone/level filters every query shares."""

from __future__ import annotations

import json
from typing import Any

from flexlearn.experience import Experience, Level, Zone

# The columns of an entry, in the table's order: what every read of entries selects (a PostgreSQL library keeps a
# search vector beside them that no read needs).
ENTRY_COLUMNS = (
    "seq, id, zone, level, title, content, examples, provenance, parent_id, retrieved, helped, hurt, created_at,"
    " updated_at, status"
)


def dumps(value: Any) -> str:
    """JSON for a TEXT column; non-ASCII text stays readable in the file."""
    return json.dumps(value, ensure_ascii=False)


def loads(value: str | None) -> Any:
    """The value of a JSON column, None for NULL."""
    return None if value is None else json.loads(value)


def to_experience(row: Any) -> Experience:
    """The Experience stored in one `experiences` row (through the one deserialiser, `Experience.from_dict`)."""
    data = dict(row)
    data["examples"] = json.loads(row["examples"])
    data["provenance"] = json.loads(row["provenance"])
    return Experience.from_dict(data)


def filters(zone: Zone | str | None, level: Level | str | None, prefix: str = "") -> tuple[str, list[str]]:
    """SQL conditions (each starting with AND) and their parameters for the optional zone/level filters.
    An unknown zone or level raises ValueError."""
    sql, params = "", []
    if zone is not None:
        sql += f" AND {prefix}zone = ?"
        params.append(str(Zone(zone)))
    if level is not None:
        sql += f" AND {prefix}level = ?"
        params.append(str(Level(level)))
    return sql, params
