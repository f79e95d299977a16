"""The HTML report: what the page shows, that it escapes model text, loads nothing, and fails clearly on bad input.

The run directories (the `runs` fixture) are written by the real loops with scripted models, see `runs.py`:
- full: results + items + library + scaling + inherit, four modes, hostile text in a reply and a library title;
- minimal: results + items only, two modes;
- metric: a set-level metric with repeats, SMILES and <think> tags in replies;
- scaling_only: scaling.json alone.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flexlearn.errors import InputError
from flexlearn.records import LIBRARY, ExperienceView, Inherit, ItemRecord, LibrarySnapshot, ModeResult, Scaling
from flexlearn.report import render_report, svg, write_report
from flexlearn.results import write_run
from tests.report.runs import DELETED_ID, FRACTION, TOP_ID

ROOT = Path(__file__).resolve().parents[2]

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# SVG elements the charts write self-closed.
SELF_CLOSED = {"line", "path", "rect", "circle"}


class _Structure(HTMLParser):
    """Collects tags, ids, hrefs and srcs, and checks that non-void elements are properly nested."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value is not None:
                self.ids.append(value)
            if name in ("href", "src", "xlink:href", "action", "poster", "data") and value is not None:
                self.links.append((name, value))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append((name, value))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def parse(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def full_page(runs: dict[str, Path]) -> str:
    return render_report(runs["full"])


def copy_run(runs: dict[str, Path], name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(runs[name], target)
    return target


def test_page_shows_header_results_and_every_mode(full_page: str, runs: dict[str, Path]) -> None:
    for text in ["qwen2.5-7b-instruct", "data/<wbr>aime25_test.jsonl", "2025-11-24 04:32 UTC", "agent_rounds", "1500"]:
        assert text in full_page
    results = json.loads((runs["full"] / "results.json").read_text())
    for row in results["results"]:
        assert f'<span class="mode">{row["mode"]}</span>' in full_page
        assert svg.percent(row["accuracy"]) in full_page
        assert svg.percent(row["ci_low"]) in full_page and svg.percent(row["ci_high"]) in full_page
    # Differences against vanilla in percentage points, errors, and calls per item (agent: 19 calls / 6 items).
    assert "+33.3 pp" in full_page and "-33.3 pp" in full_page
    assert "3.2" in full_page
    for section in ["results", "scaling", "inherit", "library", "items"]:
        assert f'<section id="{section}">' in full_page


def test_model_text_is_escaped(full_page: str) -> None:
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full_page
    assert "<script>alert" not in full_page
    # The library title "... m+n <b>" and content with a <script> arrive as text, not markup.
    assert "m+n &lt;b&gt;" in full_page
    structure = parse(full_page)
    assert structure.tags.count("script") == 1  # the page's own link helper
    assert "b" not in structure.tags


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text, as a browser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_markup_in_experiences_and_replies_cannot_break_out(tmp_path: Path) -> None:
    # Text that would run a script, or end an attribute and add an event handler, if pasted into the page as is.
    hostile = '<script>alert(1)</script> x" onload="alert(2)'
    exp = ExperienceView(id="e1", zone="golden", level="case", title=f"Title {hostile}", content=f"Body {hostile}")
    item = ItemRecord(
        mode="flex",
        problem_id=f"p1 {hostile}",
        question=f"Question {hostile}",
        prompt=f"Prompt {hostile}",
        reply=f"Reply {hostile}",
        extracted=hostile,
        retrieved=["e1", f"gone {hostile}"],
    )
    write_run(tmp_path, {"task": "exact", "model": f"model {hostile}"}, [ModeResult(mode="flex", n=1, items=[item])])
    (tmp_path / LIBRARY).write_text(LibrarySnapshot(experiences=[exp]).model_dump_json(), encoding="utf-8")
    page = render_report(tmp_path)

    assert "<script>alert" not in page and '"onload=' not in page and '" onload=' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = _Elements()
    parsed.feed(page)
    parsed.close()
    assert [tag for tag, _ in parsed.elements].count("script") == 1  # the page's own link helper
    assert not [name for _, attrs in parsed.elements for name in attrs if name.startswith("on")]
    # Each text reads back whole, as text: the reply, the experience, and the title as the tooltip (an attribute)
    # of the reply's link to the experience.
    text = "".join(parsed.text)
    for shown in (f"Reply {hostile}", f"Body {hostile}", f"Question {hostile}", f"model {hostile}"):
        assert shown in text
    tips = [attrs.get("title") for tag, attrs in parsed.elements if tag == "a" and attrs.get("href") == "#exp-e1"]
    assert tips == [f"golden case: Title {hostile}"]
    assert parse(page).errors == []


def test_page_is_well_formed_and_links_resolve(full_page: str) -> None:
    structure = parse(full_page)
    assert structure.errors == []
    assert structure.stack == []
    assert len(structure.ids) == len(set(structure.ids)), "duplicate ids"
    ids = set(structure.ids)
    for name, value in structure.links:
        assert name == "href" and value.startswith("#"), (name, value)
        assert value[1:] in ids, f"dangling link {value}"


def test_nothing_is_loaded_from_the_network(full_page: str) -> None:
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", full_page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", full_page, re.I)
    assert "@import" not in full_page
    assert "<link" not in full_page
    assert "default-src 'none'" in full_page  # the CSP blocks anything that might slip through


def test_retrieved_ids_link_to_the_experience_list(full_page: str) -> None:
    assert f'href="#exp-{TOP_ID}"' in full_page
    assert f'id="exp-{TOP_ID}"' in full_page
    # An id the library snapshot no longer has is shown, not linked.
    assert DELETED_ID in full_page
    assert f'href="#exp-{DELETED_ID}"' not in full_page


def test_most_useful_experiences_rank_by_helped_minus_hurt_then_retrievals(full_page: str) -> None:
    top = full_page.split("Most useful experiences", 1)[1]
    # TOP_ID is retrieved for all six problems, more than any other (and 35 times before this run), but it helped
    # 4 answers and hurt 2, where "Restate the question" helped 3 and hurt none.
    assert "helped 4 · hurt 2" in top and "helped 3 · hurt 0" in top
    assert top.index("Restate the question") < top.index("Verify the final answer against every constraint")
    assert "retrieved 6× in this run · 41× overall" in top
    assert "by helped minus hurt, then by retrievals counted over this run's items" in top


def test_library_composition_chart_and_table(full_page: str) -> None:
    library = full_page.split('<section id="library">', 1)[1].split("</section>", 1)[0]
    assert 'aria-labelledby="chart-library-t chart-library-d"' in library
    assert "golden principle: 2" in library and "warning case: 2" in library
    assert "<strong>12</strong>" in library  # total
    assert "merge 6" in library


def test_scaling_plot_and_fit(full_page: str, runs: dict[str, Path]) -> None:
    scaling = full_page.split('<section id="scaling">', 1)[1].split("</section>", 1)[0]
    fit = Scaling.model_validate_json((runs["full"] / "scaling.json").read_text()).fit
    assert fit is not None and fit.r2 is not None
    assert "<svg" in scaling and "<title" in scaling
    assert fit.formula in scaling and fit.formula.startswith("acc = 0.068 + 0.063 ln(1+size)")
    assert f"R² = {fit.r2:.3f}" in scaling
    # Ticks carry real sizes, size 0 included.
    for tick in [">0</text>", ">10</text>", ">200</text>"]:
        assert tick in scaling


def test_inheritance_table(full_page: str, runs: dict[str, Path]) -> None:
    inherit = full_page.split('<section id="inherit">', 1)[1].split("</section>", 1)[0]
    # The labels are the ones `inherit` writes.
    assert "qwen2.5-3b + inherited library" in inherit and "qwen2.5-3b + own library" in inherit
    assert "33.3%" in inherit and "16.7%" in inherit
    for row in Inherit.model_validate_json((runs["full"] / "inherit.json").read_text()).rows:
        assert svg.percent(row.accuracy) in inherit
    assert "<svg" in inherit


def test_drilldown_shows_each_modes_attempt(full_page: str) -> None:
    items = full_page.split('<section id="items">', 1)[1]
    assert items.count('<details class="problem') == 6
    assert "the modes disagree on 4" in items
    # The agent's failed call on aime25-05 is flagged and its error shown.
    assert "503 Service Unavailable" in items
    assert "Reference answer" in items and FRACTION in items


def test_missing_optional_files_are_fine(runs: dict[str, Path]) -> None:
    page = render_report(runs["minimal"])
    assert "vanilla" in page and "icl" in page
    assert '<section id="scaling">' not in page
    assert '<section id="inherit">' not in page
    assert '<section id="library">' not in page  # no library.json and nothing retrieved
    assert '<section id="items">' in page
    assert parse(page).errors == []


def test_scaling_only_run_dir(runs: dict[str, Path]) -> None:
    page = render_report(runs["scaling_only"])
    assert "<svg" in page
    assert "acc = 0.068" in page
    assert '<section id="results">' not in page
    assert "qwen2.5-7b-instruct" in page


def test_metric_and_repeats(runs: dict[str, Path]) -> None:
    page = render_report(runs["metric"])
    assert "top1 <span class=ci>[95% CI]</span>" in page
    assert "0.833" in page and "invalid_rate 0.167" in page
    assert "Repeats" in page
    assert "1/2" in page and "2/2" in page
    assert "flex (repeat 1)" in page and "flex (repeat 2)" in page  # numbered from 0 in items.jsonl
    assert "&lt;think&gt;" in page and "<think>" not in page
    assert "C/C=C/C(=O)O.CCO" in page
    # vanilla and flex both get 1 of 2 repeats right on uspto-0002: that is not a disagreement.
    assert "the modes disagree on 2" in page
    assert parse(page).errors == []


def test_write_report_default_path_and_out(tmp_path: Path, runs: dict[str, Path]) -> None:
    run_dir = copy_run(runs, "minimal", tmp_path)
    written = write_report(run_dir)
    assert written == run_dir / "report.html"
    assert written.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in run_dir.iterdir()) == ["items.jsonl", "report.html", "results.json"]
    elsewhere = write_report(run_dir, tmp_path / "out" / "page.html")
    assert elsewhere == tmp_path / "out" / "page.html" and elsewhere.stat().st_size > 1000
    assert write_report(run_dir, tmp_path / "out") == tmp_path / "out" / "report.html"


def test_malformed_results_names_the_file(tmp_path: Path, runs: dict[str, Path]) -> None:
    run_dir = copy_run(runs, "minimal", tmp_path)
    (run_dir / "results.json").write_text('{"task": "math", "results": [', encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json"):
        render_report(run_dir)
    (run_dir / "results.json").write_text('{"results": [{"mode": "flex", "n": "many"}]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json.*results\.0\.n"):
        render_report(run_dir)
    (run_dir / "results.json").write_text('{"task": "math"}', encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json"):
        render_report(run_dir)


def test_malformed_items_names_file_and_line(tmp_path: Path, runs: dict[str, Path]) -> None:
    run_dir = copy_run(runs, "minimal", tmp_path)
    lines = (run_dir / "items.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:40]
    (run_dir / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"items\.jsonl:3:"):
        render_report(run_dir)


@pytest.mark.parametrize("name", ["library.json", "scaling.json", "inherit.json"])
def test_malformed_optional_file_names_it(tmp_path: Path, runs: dict[str, Path], name: str) -> None:
    run_dir = copy_run(runs, "full", tmp_path)
    (run_dir / name).write_text('{"points": 3, "rows": 3, "experiences": 3}', encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(name)):
        render_report(run_dir)


def test_nothing_to_report(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(str(tmp_path))):
        render_report(tmp_path)
    (tmp_path / "items.jsonl").write_text("", encoding="utf-8")  # items alone are not a run
    with pytest.raises(InputError, match="nothing to report"):
        render_report(tmp_path)
    with pytest.raises(InputError, match="no such run directory"):
        render_report(tmp_path / "absent")


def _big_run(directory: Path, problems: int, prompt_chars: int) -> None:
    results = []
    for mode in ("vanilla", "flex"):
        items = [
            ItemRecord(
                mode=mode,
                problem_id=f"p{i:04d}",
                question=f"What is {i} + 1?",
                reference=str(i + 1),
                prompt="x" * prompt_chars + f" END-OF-PROMPT-{i}",
                reply=f"Final answer: \\boxed{{{i + 1}}}",
                extracted=str(i + 1),
                correct=mode == "flex" or i % 2 == 0,
                score=1.0,
                calls=1,
                prompt_tokens=prompt_chars // 4,
                completion_tokens=9,
            )
            for i in range(problems)
        ]
        results.append(ModeResult(mode=mode, n=problems, correct=sum(i.correct for i in items), items=items))
    write_run(directory, {"task": "math"}, results)


def test_large_runs_are_capped_and_long_prompts_truncated(tmp_path: Path) -> None:
    run_dir = tmp_path / "big"
    _big_run(run_dir, problems=30, prompt_chars=20_000)
    page = render_report(run_dir, max_problems=10)
    assert page.count('<details class="problem') == 10
    assert "Showing the first 10 of 30 problems" in page
    assert "characters omitted" in page
    assert "The full text is in items.jsonl" in page
    assert "x" * 5000 not in page
    assert "END-OF-PROMPT-0" in page  # the tail (where the question sits) is kept
    assert len(page) < 200_000


def test_svg_charts_escape_and_place_zero() -> None:
    chart = svg.scaling_chart(
        [svg.Point(0, 0.3, 0.2, 0.4), svg.Point(1000, 0.6, 0.5, 0.7)],
        chart_id="c",
        title="<Scaling & co>",
        x_label="size",
        y_label="acc",
        fit=lambda x: 0.3,
        fit_label="a < b",
    )
    assert "&lt;Scaling &amp; co&gt;" in chart and "a &lt; b" in chart
    assert ">0</text>" in chart and ">1,000</text>" in chart
    assert parse(chart).errors == []
    bars = svg.bar_chart(
        [svg.Bar("neg <x>", -0.2, -0.4, 0.1), svg.Bar("pos", 0.5, 0.3, 0.7)],
        chart_id="b",
        title="t",
        x_label="spearman",
        fmt=svg.number,
    )
    assert "neg &lt;x&gt;" in bars and ">-0.2<" in bars
    assert parse(bars).errors == []
    assert svg.nice_ticks(0.23, 0.61) == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install -y chromium)")
def test_screenshot_in_headless_chromium(tmp_path: Path, runs: dict[str, Path]) -> None:
    png = tmp_path / "report.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot_report.py"), str(runs["full"]), str(png)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a blank 1280x3000 page compresses to a few kB


def test_library_versions_and_gate_verdicts(tmp_path: Path) -> None:
    """A run written with its library carries the library's versions and the gate's verdicts to the page."""
    from flexlearn.experience import Action, Level
    from flexlearn.library.batch import Change
    from flexlearn.library.history import rollback
    from flexlearn.library.store import Library
    from tests.library.builders import make

    with Library.open(tmp_path / "lib.flexlib") as lib:
        lib.begin_run("learn-<b>1</b>", kind="learn", config={})
        for n in range(3):
            lib.apply(
                [Change(make(f"lesson {n}", level=Level.PRINCIPLE), Action.ADD, "new")],
                run_id="learn-<b>1</b>",
                problem_id=f"p{n}",
            )
        figures = {"what": "import <i>bad</i>", "before": 2, "after": 3, "n": 20, "correct_without": 12,
                   "correct_with": 8, "diff": -0.2, "ci_low": -0.35, "ci_high": -0.05, "wins": 0, "losses": 4,
                   "rolled_back": True, "reason": "rolled back: the drop's 95% interval excludes zero"}  # fmt: skip
        rollback(lib, 2)
        lib.begin_run("gate-1", kind="gate", config=figures)
        write_run(tmp_path / "run", {"task": "math"}, [], lib)
    page = render_report(tmp_path / "run")
    assert 'id="versions"' in page and "Regression gate" in page
    assert "12/20" in page and "8/20" in page and "-0.200" in page and "<strong>rolled back</strong>" in page
    assert "import &lt;i&gt;bad&lt;/i&gt;" in page and "learn-&lt;b&gt;1&lt;/b&gt;" in page  # escaped, not markup
    assert page.index(">rollback<") < page.index(">learn<")  # newest first
    assert not parse(page).errors


def test_flex_is_compared_with_each_other_mode_over_the_same_problems(full_page: str, runs: dict[str, Path]) -> None:
    from flexlearn.engine import against_others
    from flexlearn.records import ItemRecord, ModeResult

    items = [ItemRecord.model_validate_json(line) for line in (runs["full"] / "items.jsonl").read_text().splitlines()]
    results = json.loads((runs["full"] / "results.json").read_text())["results"]
    modes = [ModeResult(mode=r["mode"], items=[i for i in items if i.mode == r["mode"]]) for r in results]
    compared = against_others(modes)
    assert compared and "flex minus each other mode, paired over the same problems" in full_page
    section = full_page.split("paired over the same problems", 1)[1].split("</table>", 1)[0]
    for other, row in compared.items():
        assert f'<span class="mode">{other}</span>' in section
        assert f"{100 * row['diff']:+.1f} pp" in section
    assert section.count("(best)") == (1 if len(compared) > 1 else 0)


def test_accuracy_per_kind_of_problem_when_the_items_name_one(tmp_path: Path, runs: dict[str, Path]) -> None:
    run = copy_run(runs, "full", tmp_path)
    assert "Accuracy per kind of problem" not in render_report(run)  # these items name no kind
    lines = (run / "items.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines]
    for item in items:
        item["category"] = "<b>sums</b>" if item["problem_id"].endswith(("1", "3", "5")) else "products"
    (run / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    page = render_report(run)
    assert "Accuracy per kind of problem (2)" in page
    assert "&lt;b&gt;sums&lt;/b&gt;" in page and "<b>sums</b>" not in page  # the data's text, escaped
    table = page.split("Accuracy per kind of problem", 1)[1].split("</table>", 1)[0]
    for mode in {i["mode"] for i in items}:
        right = sum(i["correct"] for i in items if i["mode"] == mode and i["category"] == "products")
        total = sum(1 for i in items if i["mode"] == mode and i["category"] == "products")
        assert f"<td class=num>{right}/{total}</td>" in table
