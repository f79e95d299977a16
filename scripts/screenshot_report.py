"""Render a report page (or a run directory's report) to a PNG in headless Chromium, to look at the layout.

    python scripts/screenshot_report.py runs/aime/report.html report.png
    python scripts/screenshot_report.py runs/aime report.png --open-all --height 6000

A run directory is rendered first (into a temporary file unless --keep-html). `--open-all` expands every
<details> (the drill-down, the full experience list) so the screenshot shows them; it writes a modified copy of
the page, never the original. Chromium runs with a throwaway profile and with networking features off, so the
screenshot also shows that the page needs nothing from the network.

Needs a `chromium` (or `chromium-browser`, `google-chrome`) executable: `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-family executable on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 3000, timeout: float = 120.0) -> Path:
    """Screenshot `html` at width x height pixels into `png`. Raises RuntimeError when no browser is found or
    the browser writes no image."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no chromium on PATH (apt-get install -y chromium)")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="flex-shot-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",  # containers run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return png


def open_all(page: str) -> str:
    """The page with every <details> open, for a screenshot of the drill-down."""
    return page.replace("<details", "<details open")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="report.html, or a run directory to render first")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--open-all", action="store_true", help="expand every <details> before the screenshot")
    parser.add_argument("--keep-html", type=Path, help="when SOURCE is a run directory, keep the page here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="flex-report-") as tmp:
        html = args.source
        if args.source.is_dir():
            # Imported here so that screenshotting an existing page works without flexlearn installed.
            from flexlearn.report import write_report

            html = write_report(args.source, args.keep_html or Path(tmp) / "report.html")
        if args.open_all:
            opened = Path(tmp) / "opened.html"
            opened.write_text(open_all(html.read_text(encoding="utf-8")), encoding="utf-8")
            html = opened
        try:
            png = screenshot(html, args.png, width=args.width, height=args.height)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"{png} ({png.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
