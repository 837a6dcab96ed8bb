"""Render the architecture diagram of docs/architecture.md to docs/architecture.svg and .png.

Not part of the test suite, and needs what the tests do not: npm (for the mermaid package)
and a headless Chromium (Debian: ``apt-get install chromium``). Run it after changing the
diagram's Mermaid source:

    python3 deploy/tools/render_architecture.py [--mermaid-js PATH/mermaid.min.js]

Both images carry the SHA-256 of the Mermaid source they were drawn from (an XML comment in
the SVG, a tEXt chunk in the PNG); tests/deploy checks it against the source, so a diagram
changed without rendering again fails there.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
MARKER = "<!-- architecture-diagram:"
HASH_KEY = "mermaid-source-sha256"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def diagram_source(doc: str) -> str:
    """The Mermaid block right after the marker comment (tests/deploy reads it the same way)."""
    after = doc.split(MARKER, 1)[1]
    match = re.search(r"```mermaid\n(.*?)```", after, re.S)
    if match is None:
        raise SystemExit("no ```mermaid block after the marker in docs/architecture.md")
    return match.group(1)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def mermaid_js(path: str | None, work: Path) -> Path:
    if path:
        return Path(path)
    subprocess.run(["npm", "pack", "mermaid@11", "--silent"], cwd=work, check=True)
    tarball = next(work.glob("mermaid-*.tgz"))
    subprocess.run(["tar", "xzf", tarball.name], cwd=work, check=True)
    return work / "package" / "dist" / "mermaid.min.js"


def chromium(*args: str, work: Path) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    profile = work / "profile"
    out = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


def render_svg(source: str, js: Path, work: Path) -> str:
    # The source as a JS string literal: JSON is one. "</" written as "<\/" keeps a
    # "</script>" inside the diagram from closing the script element.
    literal = json.dumps(source).replace("</", "<\\/")
    page = work / "render.html"
    page.write_text(
        f"""<!doctype html><meta charset="utf-8"><body>
<script src="{js.as_uri()}"></script>
<pre id="out"></pre>
<script>
mermaid.initialize({{startOnLoad: false, theme: "default", securityLevel: "strict",
  fontFamily: "DejaVu Sans, Verdana, Arial, sans-serif", htmlLabels: false,
  flowchart: {{htmlLabels: false, curve: "basis"}}}});
mermaid.render("architecture", {literal})
  .then(r => {{ document.getElementById("out").textContent = r.svg; }})
  .catch(e => {{ document.getElementById("out").textContent = "ERROR " + e; }});
</script>"""
    )
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", page.as_uri(), work=work)
    match = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    svg = html.unescape(match.group(1)) if match else ""
    if not svg.startswith("<svg"):
        raise SystemExit(f"mermaid did not render: {svg[:500] or dom[-2000:]}")
    # An <img> or another viewer loads the file as XML, where HTML's bare <br> is an error.
    return re.sub(r"<br\s*>", "<br/>", svg)


def add_png_text(png: bytes, key: str, value: str) -> bytes:
    """A tEXt chunk before IEND (PNG spec 11.3.4.3)."""
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mermaid-js", help="a mermaid.min.js to use instead of npm pack")
    args = parser.parse_args()
    source = diagram_source(DOC.read_text())
    digest = source_hash(source)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        js = mermaid_js(args.mermaid_js, work)
        svg = render_svg(source, js, work)
        svg = svg.replace(">", f"><!-- {HASH_KEY}: {digest} -->", 1)
        (ROOT / "docs" / "architecture.svg").write_text(svg + "\n")
        view = re.search(r'viewBox="([-\d.]+) ([-\d.]+) ([\d.]+) ([\d.]+)"', svg)
        width, height = (float(view.group(3)), float(view.group(4))) if view else (1600, 1000)
        page = work / "png.html"
        page.write_text(
            '<!doctype html><body style="margin:0;background:#fff">'
            f'<img src="{(ROOT / "docs" / "architecture.svg").as_uri()}" '
            f'style="width:{int(width) + 32}px;padding:16px;box-sizing:border-box">'
        )
        shot = work / "architecture.png"
        chromium(
            f"--screenshot={shot}",
            f"--window-size={int(width) + 32},{int(height) + 32}",
            "--force-device-scale-factor=1.5",
            page.as_uri(),
            work=work,
        )
        png = add_png_text(shot.read_bytes(), HASH_KEY, digest)
        (ROOT / "docs" / "architecture.png").write_bytes(png)
    print(f"rendered docs/architecture.svg and .png ({int(width)}x{int(height)}; {digest[:12]})")


if __name__ == "__main__":
    main()
