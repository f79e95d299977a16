"""The library section: composition by zone and level, then the experiences, most useful first.

It also decides which experiences get an anchor on the page, which the drill-down's links then point to."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from markupsafe import Markup

from flexlearn.records import ExperienceView, LibraryRef, LibrarySnapshot
from flexlearn.report import svg
from flexlearn.report.format import LEVELS, ZONES, anchor, clip, integer
from flexlearn.report.load import Run

# Caps that keep a large library's page light enough for a browser; the full text stays in library.json.
MAX_EXPERIENCES = 1000
CONTENT_CHARS = 1200
TOP_RETRIEVED = 10


@dataclass
class Experiences:
    """The experiences listed on the page, by id, with their anchors, for links from elsewhere (the `xref`
    macro links an id to its entry, or shows it as plain code when the page does not list it)."""

    anchors: dict[str, str] = field(default_factory=dict)
    by_id: dict[str, ExperienceView] = field(default_factory=dict)


@dataclass(frozen=True)
class ZoneRow:
    """One zone of the composition table: its count at each level and its total."""

    zone: str
    counts: list[str]
    total: str


@dataclass(frozen=True)
class Composition:
    """The library's make-up: chart, table by zone and level, and its event counts."""

    path: str | None
    chart: Markup
    levels: list[str]
    rows: list[ZoneRow]
    level_totals: list[str]
    total: str
    events: str


@dataclass(frozen=True)
class Reference:
    """What a run that refers to its library (`library.ref.json`) says about it."""

    content_hash: str
    revision: str | None
    retrieved: str
    missing: str | None


@dataclass(frozen=True)
class Card:
    """One experience as listed: its text clipped, and the counts and parent shown under it."""

    exp: ExperienceView
    anchor: str
    content: str
    examples: list[str]
    more_examples: int
    counts: str
    parent_anchor: str | None


@dataclass
class LibrarySection:
    """What `library.html.j2` shows. Which list follows the composition is `listing`: "counts" (the most
    retrieved ids without the library's content), "none retrieved" or "empty" (a ref or a snapshot without
    entries), "cards" (the experiences, best first: `top`, then `rest` collapsed), or None (nothing to list).
    `use_run` says whether retrievals are counted over the run's items or by the library's lifetime counter,
    `useful` whether the ranking is by helped minus hurt."""

    composition: Composition | None = None
    reference: Reference | None = None
    listing: str | None = None
    use_run: bool = False
    useful: bool = False
    counts: list[tuple[str, str]] = field(default_factory=list)
    top: list[Card] = field(default_factory=list)
    rest: list[Card] = field(default_factory=list)
    listed: int = 0
    total: int = 0


def library(run: Run, shown: Experiences) -> LibrarySection:
    """The section, recording in `shown` the experiences it lists."""
    snapshot = run.library
    in_run = Counter(eid for item in run.items for eid in item.retrieved)
    section = LibrarySection()
    if snapshot is not None:
        # Snapshots in the export format do not name their file; the run's results do.
        path = snapshot.path or (run.results.library if run.results is not None else None)
        section.composition = _composition_part(snapshot, path)
        if isinstance(snapshot, LibraryRef):
            section.reference = _reference(snapshot)
    _retrieved_list(section, snapshot, in_run, shown)
    return section


def _reference(ref: LibraryRef) -> Reference:
    return Reference(
        content_hash=ref.content_hash[:16],
        revision=integer(ref.revision) if ref.revision is not None else None,
        retrieved=integer(len(ref.experiences)),
        missing=integer(len(ref.missing)) if ref.missing else None,
    )


def _composition(snapshot: LibrarySnapshot) -> dict[str, dict[str, int]]:
    counts = {z: {lv: 0 for lv in LEVELS} for z in ZONES}
    if snapshot.stats.by_zone_level:
        for zone, levels in snapshot.stats.by_zone_level.items():
            counts.setdefault(zone, {lv: 0 for lv in LEVELS}).update(levels)
    else:
        for e in snapshot.experiences:
            counts.setdefault(e.zone, {lv: 0 for lv in LEVELS})
            counts[e.zone][e.level] = counts[e.zone].get(e.level, 0) + 1
    return counts


def _composition_part(snapshot: LibrarySnapshot, path: str | None) -> Composition:
    counts = _composition(snapshot)
    levels = [*LEVELS, *sorted({lv for z in counts.values() for lv in z} - set(LEVELS))]
    rows = [
        ZoneRow(z, [integer(counts[z].get(lv, 0)) for lv in levels], integer(sum(counts[z].values()))) for z in counts
    ]
    chart = svg.composition_chart(counts, chart_id="chart-library", title="Library composition by zone and level")
    return Composition(
        path=path or None,
        chart=chart,
        levels=levels,
        rows=rows,
        level_totals=[integer(sum(c.get(lv, 0) for c in counts.values())) for lv in levels],
        total=integer(sum(sum(c.values()) for c in counts.values())),
        events=", ".join(f"{k} {integer(v)}" for k, v in snapshot.stats.events.items() if v),
    )


def _retrieved_list(
    section: LibrarySection, snapshot: LibrarySnapshot | None, in_run: Counter[str], shown: Experiences
) -> None:
    use_run = section.use_run = sum(in_run.values()) > 0
    if snapshot is None:
        if use_run:
            section.listing = "counts"
            section.counts = [(eid, integer(n)) for eid, n in in_run.most_common(TOP_RETRIEVED)]
        return
    exps = snapshot.experiences
    if not exps:
        section.listing = "none retrieved" if isinstance(snapshot, LibraryRef) else "empty"
        return

    def count(e: ExperienceView) -> int:
        return in_run[e.id] if use_run else e.retrieved

    # Once the helped/hurt counters have counted anything, rank by what an entry did (helped - hurt), then by
    # retrievals; before that, retrievals alone.
    useful = section.useful = any(e.helped or e.hurt for e in exps)

    def net(e: ExperienceView) -> int:
        return e.helped - e.hurt if useful else 0

    zone_rank = {z: i for i, z in enumerate(ZONES)}
    level_rank = {lv: i for i, lv in enumerate(LEVELS)}
    # Best first (ties by zone, level, title) so that, under the cap, the linked ones are the listed ones.
    ordered = sorted(
        exps,
        key=lambda e: (-net(e), -count(e), zone_rank.get(e.zone, 9), level_rank.get(e.level, 9), e.title, e.id),
    )
    # A snapshot should not repeat an id, but if one does, list it once: ids are anchors and must be unique.
    ordered = list({e.id: e for e in ordered}.values())
    listed = ordered[:MAX_EXPERIENCES]
    for e in listed:
        shown.anchors[e.id] = anchor("exp", e.id)
        shown.by_id[e.id] = e
    top = [e for e in listed[:TOP_RETRIEVED] if count(e) > 0 or net(e) > 0]
    rest = listed[len(top) :]
    section.listing = "cards"
    section.top = [_card(e, in_run, shown) for e in top]
    section.rest = [_card(e, in_run, shown) for e in rest]
    section.listed, section.total = len(listed), len(exps)


def _card(e: ExperienceView, in_run: Counter[str], shown: Experiences) -> Card:
    return Card(
        exp=e,
        anchor=shown.anchors.get(e.id, anchor("exp", e.id)),
        content=clip(e.content, CONTENT_CHARS)[0],
        examples=[clip(x, 600)[0] for x in e.examples[:2]],
        more_examples=max(0, len(e.examples) - 2),
        counts=(
            f"retrieved {in_run[e.id]:,}× in this run · {e.retrieved:,}× overall · helped {e.helped:,} · "
            f"hurt {e.hurt:,}"
        ),
        parent_anchor=shown.anchors.get(e.parent_id) if e.parent_id else None,
    )
