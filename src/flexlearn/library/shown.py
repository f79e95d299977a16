"""What a model may read of a library: the active entries, never the quarantined ones.

An entry imported without `--trust` waits in quarantine until a person approves it. Every path by which library
text reaches a model prompt (retrieved guidance, its ancestors, the actor's experience tool, the critic's lessons)
reads through `Shown`, which has no way to return a quarantined entry: quarantine is a property of the reader a
model-facing component is given, not a filter each caller must remember. Components that build prompts take a
`Shown`, never a `Library` (a test holds the agents and retrieval packages to that).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flexlearn.experience import Experience, Status

if TYPE_CHECKING:
    from flexlearn.library.experiences import Experiences


class Shown:
    """A read-only view of a library's active entries (`Library.shown()`)."""

    def __init__(self, library: Experiences) -> None:
        self._library = library

    def find(self, id: str) -> Experience | None:
        """The active entry with this id, or None (also when it is quarantined)."""
        return self.find_many([id]).get(id)

    def find_many(self, ids: Iterable[str]) -> dict[str, Experience]:
        """The active entries with these ids, by id; ids of missing or quarantined entries are left out."""
        return self._library.find_retrievable(ids)

    def children(self, id: str) -> list[Experience]:
        """The active entries whose parent is `id`, in insertion order."""
        return [c for c in self._library.children(id) if c.status == Status.ACTIVE]

    def parent(self, exp: Experience) -> Experience | None:
        """The active parent of `exp`, or None."""
        return None if exp.parent_id is None else self.find(exp.parent_id)

    def ancestors(self, exp: Experience) -> list[Experience]:
        """The parent, grandparent... of `exp`, nearest first, up to the first that is missing or quarantined.
        Parents are strictly more general than their children, so this ends."""
        chain: list[Experience] = []
        parent = self.parent(exp)
        while parent is not None:
            chain.append(parent)
            parent = self.parent(parent)
        return chain

    def ancestors_of(self, exps: Iterable[Experience]) -> dict[str, list[Experience]]:
        """`ancestors` of each of `exps`, by id, read one generation at a time (one query per level climbed, not
        one per parent: on a server each read is a round trip)."""
        exps = list(exps)
        chains: dict[str, list[Experience]] = {e.id: [] for e in exps}
        heads = {e.id: e for e in exps}  # each chain's most general entry so far
        while True:
            wanted = {id: head.parent_id for id, head in heads.items() if head.parent_id is not None}
            if not wanted:
                return chains
            found = self.find_many(wanted.values())
            heads = {id: found[parent] for id, parent in wanted.items() if parent in found}
            for id, parent in heads.items():
                chains[id].append(parent)
