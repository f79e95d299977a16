"""The library section: composition by zone and level, then the experiences, most useful first.

It also decides which experiences get an anchor on the page, which the drill-down's links then point to."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from flexlearn.records import LIBRARY, LIBRARY_REF, ExperienceView, LibraryRef, LibrarySnapshot
from flexlearn.report import svg
from flexlearn.report.format import LEVELS, ZONES, anchor, clip, integer, one_line, path_html, table
from flexlearn.report.load import Run
from flexlearn.report.svg import esc

# Caps that keep a large library's page light enough for a browser; the full text stays in library.json.
MAX_EXPERIENCES = 1000
CONTENT_CHARS = 1200
TOP_RETRIEVED = 10


@dataclass
class Experiences:
    """The experiences listed on the page, by id, with their anchors, for links from elsewhere."""

    anchors: dict[str, str] = field(default_factory=dict)
    by_id: dict[str, ExperienceView] = field(default_factory=dict)

    def link(self, eid: str) -> str:
        """A link to experience `eid`, coloured by its zone; plain code when the page does not list it."""
        target = self.anchors.get(eid)
        exp = self.by_id.get(eid)
        if target and exp is not None:
            tip = f"{exp.zone} {exp.level}: {exp.title or one_line(exp.content, 80)}"
            return f'<a class="xref {esc(exp.zone)}" href="#{target}" title="{esc(tip)}">{esc(eid)}</a>'
        return f'<code class="xref" title="not listed in this report">{esc(eid)}</code>'


def library(run: Run, shown: Experiences) -> str:
    """The section, recording in `shown` the experiences it lists."""
    snapshot = run.library
    in_run = Counter(eid for item in run.items for eid in item.retrieved)
    parts = ['<section id="library"><h2>Experience library</h2>']
    if snapshot is None:
        parts.append(
            f'<p class="note">No {LIBRARY} or {LIBRARY_REF} in this run directory: composition and content '
            "unavailable.</p>"
        )
    else:
        # Snapshots in the export format do not name their file; the run's results do.
        path = snapshot.path or (run.results.library if run.results is not None else None)
        parts.append(_composition_part(snapshot, path))
        if isinstance(snapshot, LibraryRef):
            parts.append(_reference_note(snapshot))
    parts.append(_retrieved_list(snapshot, in_run, shown))
    parts.append("</section>")
    return "".join(parts)


def _reference_note(ref: LibraryRef) -> str:
    revision = f", revision {integer(ref.revision)}" if ref.revision is not None else ""
    missing = f" {len(ref.missing):,} retrieved entries are not in this library." if ref.missing else ""
    return (
        f'<p class="note">The run refers to its library (content hash <code>{esc(ref.content_hash[:16])}</code>'
        f"{revision}) instead of copying it: the composition is the library's when the run was written, and the "
        f"experiences below are the {len(ref.experiences):,} the run retrieved.{missing} Run with --snapshot to "
        "keep a full copy.</p>"
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


def _composition_part(snapshot: LibrarySnapshot, path: str | None) -> str:
    counts = _composition(snapshot)
    levels = [*LEVELS, *sorted({lv for z in counts.values() for lv in z} - set(LEVELS))]
    rows = [
        [
            f'<span class="badge {esc(z)}">{esc(z)}</span>',
            *(integer(counts[z].get(lv, 0)) for lv in levels),
            f"<strong>{integer(sum(counts[z].values()))}</strong>",
        ]
        for z in counts
    ]
    rows.append(
        [
            "<strong>total</strong>",
            *(f"<strong>{integer(sum(c.get(lv, 0) for c in counts.values()))}</strong>" for lv in levels),
            f"<strong>{integer(sum(sum(c.values()) for c in counts.values()))}</strong>",
        ]
    )
    composition = table(["Zone", *map(esc, levels), "Total"], rows, css="composition")
    chart = svg.composition_chart(counts, chart_id="chart-library", title="Library composition by zone and level")
    events = ", ".join(f"{esc(k)} {integer(v)}" for k, v in snapshot.stats.events.items() if v)
    where = f"{path_html(path)}. " if path else ""
    return (
        f'<p class="note">{where}Golden entries record what worked; warning entries what failed and why. '
        f"Levels run from general principles to concrete cases.</p>"
        f'<div class="split"><figure>{chart}</figure><div>{composition}'
        + (f'<p class="note">Library events: {events}.</p>' if events else "")
        + "</div></div>"
    )


def _retrieved_list(snapshot: LibrarySnapshot | None, in_run: Counter[str], shown: Experiences) -> str:
    use_run = sum(in_run.values()) > 0
    source = "counted over this run's items" if use_run else "from the library's lifetime retrieval counter"
    if snapshot is None:
        if not use_run:
            return ""
        rows = [[f"<code>{esc(eid)}</code>", integer(n)] for eid, n in in_run.most_common(TOP_RETRIEVED)]
        return (
            f"<h3>Most retrieved experiences</h3><p class=note>Retrievals {source}; content unavailable without "
            f"{LIBRARY}.</p>{table(['Experience', 'Retrieved'], rows)}"
        )
    exps = snapshot.experiences
    if not exps:
        if isinstance(snapshot, LibraryRef):
            return '<p class="note">The run retrieved no experience.</p>'
        return '<p class="note">The library snapshot lists no experiences.</p>'

    def count(e: ExperienceView) -> int:
        return in_run[e.id] if use_run else e.retrieved

    # Once the helped/hurt counters have counted anything, rank by what an entry did (helped - hurt), then by
    # retrievals; before that, retrievals alone.
    useful = any(e.helped or e.hurt for e in exps)

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
    cards = "".join(_experience_card(e, in_run, shown) for e in top)
    if useful:
        heading = "Most useful experiences"
        note = f"Top {len(top)} by helped minus hurt, then by retrievals {source}."
    else:
        heading = "Most retrieved experiences"
        note = f"Top {len(top)}, retrievals {source}; no experience has helped or hurt an answer yet."
    out = [f'<h3>{heading}</h3><p class="note">{note}</p>']
    out.append(cards or '<p class="muted">No experience was retrieved.</p>')
    if rest:
        more = "".join(_experience_card(e, in_run, shown) for e in rest)
        capped = (
            f'<p class="note">Showing {len(listed):,} of {len(exps):,} experiences; the rest are in {LIBRARY}.</p>'
            if len(exps) > len(listed)
            else ""
        )
        out.append(
            f'<details class="all-exp"><summary>All other experiences ({len(rest):,})</summary>{capped}{more}</details>'
        )
    return "".join(out)


def _experience_card(e: ExperienceView, in_run: Counter[str], shown: Experiences) -> str:
    content, _ = clip(e.content, CONTENT_CHARS)
    examples = "".join(f"<li><pre>{esc(clip(x, 600)[0])}</pre></li>" for x in e.examples[:2])
    more_examples = f"<li class=muted>… {len(e.examples) - 2} more</li>" if len(e.examples) > 2 else ""
    parent = ""
    if e.parent_id:
        target = shown.anchors.get(e.parent_id)
        ref = f'<a href="#{target}">{esc(e.parent_id)}</a>' if target else f"<code>{esc(e.parent_id)}</code>"
        parent = f" · parent {ref}"
    counts = (
        f"retrieved {in_run[e.id]:,}× in this run · {e.retrieved:,}× overall · helped {e.helped:,} · hurt {e.hurt:,}"
    )
    title = esc(e.title) if e.title else '<span class="muted">(untitled)</span>'
    return (
        f'<article class="exp {esc(e.zone)}" id="{shown.anchors.get(e.id, anchor("exp", e.id))}">'
        f'<div class="exp-head"><span class="badge {esc(e.zone)}">{esc(e.zone)}</span>'
        f'<span class="badge level">{esc(e.level)}</span><strong>{title}</strong>'
        f'<code class="id">{esc(e.id)}</code></div>'
        f'<p class="exp-body">{esc(content)}</p>'
        + (f'<ul class="examples">{examples}{more_examples}</ul>' if examples else "")
        + f'<p class="exp-meta">{counts}{parent}</p></article>'
    )
