"""The rendered book, opened page by page in headless Chromium, as a reader sees it.

The book is built (the README's build command, into a temporary folder), served on
localhost and every page is opened at 1280 px and at phone width. The checks, one
kind of defect each (``KINDS``):

    raw-table      Markdown table text (``|---|``) shown as a paragraph instead of a table
    too-wide       at 1280 px, a display equation, code block, output or table wider than
                   its column (it scrolls or runs past the edge)
    cut-off        at phone width, content that runs past the screen without a scrollbar
    solution       an assignment page, its .ipynb download or the notebook its Colab button
                   opens shows a solution (the BEGIN/END SOLUTION markers or solution code)
    image          an image that did not load
    shrunk         a figure shown at under 90% of its stored width (its text shrinks too)
    progress-bar   a progress bar stored on the page (a reader wants one summary line)
    console        an error in the browser console from the book's own files

MathJax and the widget runtime come from CDNs, which the test machine cannot reach:
the server hands the browser local copies instead (``CDN``; ``.ci/run`` fetches them
with npm into ``_build/browser/js``), so equations are typeset when widths are
measured. Every other outside address fails at once (the browser resolves no name).
Screenshots of three pages are kept in ``_build/browser/screenshots`` (not committed).

    python tests/test_browser.py [SITE]   # the findings on a built site (default _build/html)

The test skips, with one line saying why, only where no Chromium can be had.
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JS = Path(os.environ.get("PDLEARN_BROWSER_JS", ROOT / "_build" / "browser" / "js"))
SHOTS = ROOT / "_build" / "browser" / "screenshots"
WIDE, PHONE = 1280, 390
SCREENSHOTS = {"book/intro.html": "landing", "book/01_diffusion_2d.html": "chapter-2d",
               "book/05_diffusion_images.html": "chapter-images"}

# what the pages load from CDNs -> the local copy under JS (longest prefix first)
CDN = {
    "https://cdn.jsdelivr.net/npm/mathjax@3/": "mathjax/",
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js": "requirejs/require.js",
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/": "@jupyter-widgets/html-manager/",
    "https://cdn.jsdelivr.net/npm/": "",  # where the widget runtime looks for widget packages
}
NEEDED = ("mathjax/es5/tex-mml-chtml.js", "requirejs/require.js", "@jupyter-widgets/html-manager/dist/embed-amd.js")

KINDS = ("raw-table", "too-wide", "cut-off", "solution", "image", "shrunk", "progress-bar", "console")
Finding = namedtuple("Finding", "page width kind detail")


# ----------------------------------------------------------------------------------------
# Serving a built site with local copies of what it loads from CDNs
# ----------------------------------------------------------------------------------------

def localise(html):
    """A page's HTML with its CDN addresses pointing at the local copies (``/_cdn/...``).

    The integrity hashes go too: they are the hashes of the CDNs' builds of those files.
    """
    for remote, local in CDN.items():
        html = html.replace(remote, "/_cdn/" + local)
    return re.sub(r'\s(integrity|crossorigin)="[^"]*"', "", html)


class Handler(http.server.SimpleHTTPRequestHandler):
    site = js = None

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path.startswith("/_cdn/"):
            return str(self.js / path[len("/_cdn/"):])
        return str(self.site / path.lstrip("/"))

    def send_head(self):
        target = Path(self.translate_path(self.path))
        if target.suffix != ".html" or not target.is_file():
            return super().send_head()
        body = localise(target.read_text(encoding="utf-8")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io
        return io.BytesIO(body)

    def log_message(self, *args):
        pass


def serve(site, js=JS):
    """Serve ``site`` on a free localhost port, in a thread; returns the server (``.url``)."""
    handler = type("SiteHandler", (Handler,), {"site": Path(site), "js": Path(js)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ----------------------------------------------------------------------------------------
# The browser
# ----------------------------------------------------------------------------------------

def why_no_browser():
    """None when Chromium, its driver and Selenium are here; else why not (the test skips)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no Chromium (apt-get install -y chromium chromium-driver; .ci/run does it)"
    if not shutil.which("chromedriver"):
        return "no chromedriver (apt-get install -y chromium-driver; .ci/run does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium (pip install -r requirements.txt)"
    return None


def check_local_scripts(js=JS):
    """Fail, saying how to fetch them, when the local copies of the CDN scripts are missing:
    without them no equation is typeset, and the widths would be measured on raw TeX."""
    missing = [name for name in NEEDED if not (js / name).is_file()]
    assert not missing, (f"no local copy of {', '.join(missing)} in {js}: run the block "
                         "'the browser check's setup' of .ci/run (npm pack mathjax@3.2.2 ...)")


def browser():
    """Headless Chromium under the system's chromedriver (Selenium never fetches a browser here)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                f"--window-size={WIDE},900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    return driver


def set_width(driver, width):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})


# Runs in the page: waits for MathJax and the images, then measures. Returns a list of
# [kind, detail]. The column of an element is the article (.bd-article) it sits in.
MEASURE = r"""
const [width, done] = [arguments[0], arguments[arguments.length - 1]];
const ready = async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await Promise.all([...document.images].map(img => img.complete ? 0 :
      new Promise(r => { img.onload = img.onerror = r; setTimeout(r, 10000); })));
};
const name = el => {
  const text = (el.innerText || el.textContent || el.getAttribute('src') || '').trim().replace(/\s+/g, ' ');
  const chars = Array.from(text);  // whole characters: maths letters are surrogate pairs
  return chars.slice(0, 70).join('') + (chars.length > 70 ? '...' : '');
};
ready().then(() => {
  const found = [];
  const article = document.querySelector('article.bd-article') || document.body;
  const column = article.getBoundingClientRect();
  // raw Markdown tables: a separator row |---|---| outside code
  for (const el of article.querySelectorAll('p, li, .output.text_plain, .output.stream')) {
    if (el.closest('div.highlight') && !el.closest('.cell_output')) continue;
    const text = el.innerText || '';
    if (/\|\s*:?(-{3,}|[\u2013\u2014]+):?\s*\|/.test(text))  // typeset: --- becomes a dash
      found.push(['raw-table', name(el)]);
  }
  // widths: display maths, code, outputs, tables, images
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const what = el => el.matches('mjx-container, div.math') ? 'equation' : el.matches('pre') ?
    (el.closest('.cell_output') ? 'output' : 'code') : el.tagName.toLowerCase();
  const boxes = article.querySelectorAll(
    'mjx-container[display="true"], div.math, div.highlight pre, .cell_output pre, table, .cell_output img');
  for (const el of boxes) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    const hidden = el.scrollWidth - el.clientWidth;  // content beyond the box, scrolled or clipped
    if (width >= 1000) {
      const over = Math.max(hidden, r.right - column.right);
      if (over > 1) found.push(['too-wide', `${what(el)} ${Math.round(over)} px too wide: ${name(el)}`]);
      continue;
    }
    // phone width: too wide is expected; out of reach is not
    if (hidden > 1 && !scrolls(el))
      found.push(['cut-off', `${what(el)} clipped by ${hidden} px, no scrollbar: ${name(el)}`]);
    let holder = el.parentElement;
    while (holder && holder !== article && !scrolls(holder)) holder = holder.parentElement;
    const edge = holder && holder !== article ? holder.getBoundingClientRect().right : r.right;
    if (edge > window.innerWidth + 1)
      found.push(['cut-off', `${what(el)} runs ${Math.round(edge - window.innerWidth)} px off the screen: ${name(el)}`]);
  }
  if (width < 1000 && document.documentElement.scrollWidth > window.innerWidth + 1)
    found.push(['cut-off', `the page is ${document.documentElement.scrollWidth - window.innerWidth} px wider than the screen`]);
  for (const img of article.querySelectorAll('img')) {
    if (!img.complete || img.naturalWidth === 0) found.push(['image', `not loaded: ${img.getAttribute('src').slice(0, 80)}`]);
    else if (width >= 1000 && img.closest('.cell_output') && img.width < 0.9 * img.naturalWidth)
      found.push(['shrunk', `figure shown at ${Math.round(100 * img.width / img.naturalWidth)}% (${img.naturalWidth} px wide in a ${Math.round(column.width)} px column)`]);
  }
  const bars = [...article.querySelectorAll('.widget-hprogress, progress, script[type="application/vnd.jupyter.widget-view+json"]')]
    .filter(el => !el.closest('.widget-interact'));
  const barText = (article.innerText.match(/\|[^|\n]*\|\s*\d+\/\d+\s*\[\d+:\d+<[^\]]*\]/g) || []);
  if (bars.length || barText.length)
    found.push(['progress-bar', `${bars.length} widget outputs, ${barText.length} bar lines (first: ${(barText[0] || '').slice(0, 60)})`]);
  return found;
}).then(found => done(JSON.stringify(found)), err => done(JSON.stringify([['console', `the check failed: ${err}`]])));
"""


def open_page(driver, url, width):
    """Load ``url`` at ``width`` px; the page's findings as [kind, detail] pairs."""
    set_width(driver, width)
    driver.get(url)
    return json.loads(driver.execute_async_script(MEASURE, width))


def console_errors(driver, origin):
    """Errors logged by the page's own files (served from ``origin``), not by outside addresses."""
    errors = []
    for entry in driver.get_log("browser"):
        message = entry.get("message", "")
        if entry.get("level") != "SEVERE" or "favicon.ico" in message:
            continue
        source = message.split(" ", 1)[0]
        if source.startswith(origin) or not source.startswith("http"):
            errors.append(message[:200])
    return errors


# ----------------------------------------------------------------------------------------
# Solutions
# ----------------------------------------------------------------------------------------

MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


@functools.lru_cache(maxsize=None)
def solution_lines(root=ROOT):
    """Every line of solution code in the repository's solution notebooks (between the
    markers), long enough to be telling and found nowhere else in them (a line the notebook
    also shows outside its solutions is handed out anyway): what no page for students may show."""
    import nbformat

    inside, outside = set(), set()
    skip = {"_build", ".venv", "student", ".ipynb_checkpoints", "node_modules"}
    for path in Path(root).rglob("*.ipynb"):
        if skip & set(path.relative_to(root).parts):
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            within = False
            for line in cell.source.splitlines():
                if line.strip() in MARKERS:
                    within = line.strip() == MARKERS[0]
                elif len(line.strip()) >= 16 and not line.strip().startswith("#"):
                    (inside if within else outside).add(line.strip())
    return frozenset(inside - outside)


def is_assignment(page):
    return page.startswith("book/assignments/") and not page.endswith("instructors.html")


def solutions_shown(text, where, lines):
    """Findings for solution markers or solution lines in ``text``."""
    found = [f"{where} shows '{m}'" for m in MARKERS if m in text]
    shown = sorted(line for line in lines if line in text)
    if shown:
        found.append(f"{where} shows {len(shown)} lines of solution code, e.g. {shown[0][:60]!r}")
    return found


def assignment_findings(driver, site, page, root=ROOT):
    """Solutions on an assignment page, in its .ipynb download, and in the notebook of the
    repository that its Colab button opens."""
    lines = solution_lines(root)
    found = solutions_shown(driver.find_element("tag name", "article").text, "the page", lines)
    html = (Path(site) / page).read_text(encoding="utf-8")
    for href in sorted(set(re.findall(r'href="([^"]+\.ipynb)"', html))):
        if href.startswith("https://colab.research.google.com/github/"):
            path = Path(root, *href.split("/blob/", 1)[1].split("/")[1:])
            where = f"the Colab notebook ({path.relative_to(root)})"
        elif not href.startswith("http"):
            path = (Path(site) / page).parent / href
            where = "the .ipynb download"
        else:
            continue
        if path.is_file():
            found += solutions_shown(path.read_text(encoding="utf-8"), where, lines)
    return found


# ----------------------------------------------------------------------------------------
# Auditing a whole site
# ----------------------------------------------------------------------------------------

def pages(site):
    """Every HTML page of a built site, as paths relative to it."""
    site = Path(site)
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(site).parts))


def audit(site, widths=(WIDE, PHONE), only=None, root=ROOT, shots=None):
    """Open every page of the built ``site`` at each width; every defect found, as Findings."""
    check_local_scripts()
    server, driver = serve(site), browser()
    findings = []
    try:
        for page in only or pages(site):
            for width in widths:
                url = server.url + page
                for kind, detail in open_page(driver, url, width):
                    findings.append(Finding(page, width, kind, detail))
                if width == WIDE:
                    if is_assignment(page):
                        findings += [Finding(page, width, "solution", d)
                                     for d in assignment_findings(driver, site, page, root)]
                    if shots is not None and page in SCREENSHOTS:
                        shots.mkdir(parents=True, exist_ok=True)
                        driver.save_screenshot(str(shots / f"{SCREENSHOTS[page]}.png"))
                findings += [Finding(page, width, "console", e) for e in console_errors(driver, server.url)]
    finally:
        driver.quit()
        server.shutdown()
    return findings


def report(findings):
    lines = [f"{f.page} @{f.width}px  [{f.kind}]  {f.detail}" for f in findings]
    return "\n".join(lines) or "no findings"


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------

NO_BROWSER = why_no_browser()
needs_browser = pytest.mark.skipif(NO_BROWSER is not None, reason=NO_BROWSER or "")


def build(out):
    """The README's build command, into ``out``; returns the HTML folder."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--all", "--warningiserror", "--nitpick", "--keep-going",
           "--path-output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the book does not build:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return Path(out) / "_build" / "html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A fresh build of the book; PDLEARN_BOOK_SITE=_build/html checks an existing one instead."""
    if os.environ.get("PDLEARN_BOOK_SITE"):
        return Path(os.environ["PDLEARN_BOOK_SITE"]).resolve()
    return build(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="module")
def findings(site):
    return audit(site, shots=SHOTS)


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_no_defect_in_the_rendered_book(findings, kind):
    found = [f for f in findings if f.kind == kind]
    assert not found, f"{len(found)} '{kind}' defects:\n" + report(found)


# The check itself: planted defects, on pages of the same build, must be reported.

PLANTED = """
<p>| a | b |
|---:|---:|
| 1 | 2 |</p>
<div class="math notranslate nohighlight">\\[ x = {long} \\]</div>
<div class="highlight"><pre>x = "{code}"</pre></div>
<div class="cell_output docutils container"><pre style="overflow: hidden">{code}</pre></div>
<div class="cell_output docutils container"><img alt="" src="no-such-figure.png"></div>
<div class="cell_output docutils container"><img alt="" src="data:image/png;base64,{wide}"></div>
<div class="highlight"><pre>### BEGIN SOLUTION
{solution}
### END SOLUTION</pre></div>
<div class="cell_output docutils container"><div class="output stream"><div class="highlight"><pre>teacher:  30%|###       | 3/10 [00:01&lt;00:02,  3.1it/s]</pre></div></div></div>
<script>undefined_function_of_the_book();</script>
"""


def wide_png(width=2400, height=10):
    import base64
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@needs_browser
@pytest.mark.slow
def test_the_check_reports_planted_defects(site, tmp_path):
    planted = tmp_path / "site"
    shutil.copytree(site, planted, ignore=shutil.ignore_patterns("_sources", "_images"))
    solution = "return alpha[:, None] * x + sigma[:, None] * eps_of_the_planted_solution"
    body = PLANTED.format(long=" + ".join(f"a_{{{i}}} b_{{{i}}}" for i in range(60)), code="y" * 200,
                          wide=wide_png(), solution=solution)
    page = (planted / "book" / "intro.html").read_text(encoding="utf-8")  # one folder up: relink
    page = re.sub(r'(href|src)="(?!https?:|#|data:|/|mailto:)', r'\1="../', page)
    target = planted / "book" / "assignments" / "planted.html"
    target.write_text(page.replace('<section id="', body + '<section id="', 1), encoding="utf-8")
    repo = tmp_path / "repo"
    (repo / "book").mkdir(parents=True)
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"### BEGIN SOLUTION\n{solution}\n### END SOLUTION")])
    nbformat.write(nb, repo / "book" / "a.ipynb")
    solution_lines.cache_clear()
    try:
        found = audit(planted, only=["book/assignments/planted.html"], root=repo)
    finally:
        solution_lines.cache_clear()
    kinds = {f.kind for f in found}
    text = report(found)
    assert set(KINDS) <= kinds, text
    assert any("equation" in f.detail for f in found if f.kind == "too-wide"), text
    assert any("code" in f.detail for f in found if f.kind == "too-wide"), text
    assert any("solution code" in f.detail for f in found if f.kind == "solution"), text


@needs_browser
def test_localise_points_cdn_scripts_at_local_copies():
    check_local_scripts()
    html = ('<script integrity="sha256-x" crossorigin="anonymous" '
            'src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>'
            '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>')
    local = localise(html)
    assert "https://" not in local and "integrity" not in local
    for src in re.findall(r'src="/_cdn/([^"]+)"', local):
        assert (JS / src).is_file(), src


if __name__ == "__main__":
    if NO_BROWSER:
        sys.exit(f"cannot open the pages: {NO_BROWSER}")
    built = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html")
    result = audit(built, shots=SHOTS)
    print(report(result))
    print(json.dumps({k: sorted({f.page for f in result if f.kind == k}) for k in KINDS}, indent=1))
