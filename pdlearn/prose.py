"""The prose check: every run-dependent number in a chapter's text comes from its stored outputs.

The book renders the outputs stored in each notebook, executed at the cpu budget. A sentence
that says "the 4-step student scores 12.09" must agree with a number a cell printed, or a
reader who compares them stops trusting the rest. This check reads a committed notebook
(its JSON, not a re-run) and, for every markdown cell, finds the numbers a run could change:

    decimals (0.95, 16.16, 2.8e-5), percentages (10%), ratios (2.3x), times (914 s, 15 ms)
    and counts of ten or more (5,000 samples, 3,000 iterations)

Each must appear among the numbers of the notebook's stored outputs, as printed or rounded
from one (the text's 2.3x matches a printed 2.33; its 10% a printed 0.1 or 10.2%). What is not
run-dependent goes in the notebook's allowlist, ``metadata.pdlearn.prose_numbers``: a mapping
from the number as written to its reason, a paper's number with its citation, a definition such
as T = 1000, an exercise's constant. Numbers inside math, inline code, citations and links, and
the numbers of chapters, equations, sections, tables, figures, exercises and years are not
results and are skipped.

A comparison word in the text ("beats", "a tie", "within the floor", ...) needs a verdict of
``metrics.verdict`` ('better', 'tie' or 'worse') printed by a code cell near it (at most
``NEAR`` cells away), the table or line whose numbers the sentence reads.

    problems("book/06_progressive_distillation_images.ipynb")   # [] when the prose holds
    python -m pdlearn.prose book/*.ipynb                          # the same, for a shell
"""
import json
import math
import re
import sys

NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
                    r"(\s?(?:%|x\b|×|ms\b|µs\b|s\b|min\b|minutes?\b|seconds?\b|hours?\b))?")
REFERENCE = re.compile(r"(?i)\b(chapters?|ch\.|eqs?\.|equations?|tables?|figures?|figs?\.|sections?|secs?\.|"
                       r"algorithms?|exercises?|appendix|app\.|step|part|page|pp?\.|issue|version|python|torch|"
                       r"assignments?|cell|cells|line|lines|rounds?\s+of)\s*\(?$")
COMPARISON = re.compile(r"(?i)\b(beats?|beaten|outperforms?|a tie|ties with|tied|within the floor|at the floor|"
                        r"better than|worse than|indistinguishable|no better|no worse)\b")
VERDICT = re.compile(r"\b(better|tie|worse)\b")
NEAR = 3  # a comparison word needs a verdict printed by a code cell at most this many cells away


def _strip(text):
    """Markdown without what holds no result: math, code, citations, links' targets, HTML, URLs."""
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"(?<!\\)\$[^$\n]+\$", " ", text)
    text = re.sub(r"\{[a-z]+\}`[^`]*`", " ", text)  # {cite}`...`, {numref}`...`, roles
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # keep a link's words, drop its target
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"\\begin\{.*?\\end\{[a-z*]+\}", " ", text, flags=re.S)
    return text


def _value(token):
    return float(token.replace(",", ""))


def _decimals(token):
    """How the text rounded its number: ('dec', places) or ('sig', significant digits) for 2.8e-5."""
    mantissa = re.split(r"[eE]", token.replace(",", ""))[0]
    places = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if re.search(r"[eE]", token):
        return "sig", len(mantissa.replace(".", "").lstrip("0")) or 1
    return "dec", places


def prose_numbers(markdown):
    """The run-dependent numbers of a markdown text: a list of (token as written, unit, context)."""
    text = _strip(markdown)
    found = []
    for m in NUMBER.finditer(text):
        token, unit = m.group(1), (m.group(2) or "").strip()
        before = text[max(0, m.start() - 30):m.start()]
        after = text[m.end():m.end() + 2]
        value = _value(token)
        if REFERENCE.search(before) or re.match(r"^[-–]\s?\d", after) and not unit:
            continue  # chapter 4, eq. (8), Table 2, exercise 3; a range start such as "1-2" is checked at its end
        if re.search(r"(?i)(et al\.,?|&\s?\w+,?|,)\s*$", before) and 1950 <= value <= 2035 and "." not in token:
            continue  # a year in a citation
        if not unit and "." not in token and "e" not in token.lower() and value < 10:
            continue  # small integers: step counts, list positions, "two"
        if re.match(r"^\s?-?(step|round|bit|level|d|D)\b", text[m.end():m.end() + 8]) and value < 10_000 and \
                "." not in token and not unit:
            continue  # a 4-step student, an 8-bit model, a 2D set: names of the thing, not results
        found.append((token, unit, " ".join(text[max(0, m.start() - 40):m.end() + 20].split())))
    return found


def output_numbers(outputs):
    """Every number printed by a cell's stored outputs, as floats (percentages also as fractions,
    fractions also as percentages)."""
    values = []
    for out in outputs:
        texts = []
        if out.get("output_type") == "stream":
            texts.append(_join(out.get("text", "")))
        for kind in ("text/plain", "text/markdown", "text/html", "text/latex"):
            if kind in out.get("data", {}):
                texts.append(_join(out["data"][kind]))
        for text in texts:
            for m in NUMBER.finditer(text.replace("\u2212", "-")):
                v = _value(m.group(1))
                values.append(v)
                if (m.group(2) or "").strip() == "%":
                    values.append(v / 100)
                elif v <= 1:
                    values.append(v * 100)
    return values


def _text(out):
    """All the text of one stored output."""
    parts = [_join(out.get("text", ""))]
    parts += [_join(v) for v in out.get("data", {}).values() if isinstance(v, (str, list))]
    return " ".join(parts)


def _join(text):
    return "".join(text) if isinstance(text, list) else text


def _matches(token, unit, printed):
    """Whether the text's number is one of the printed ones, rounded the way the text rounded it."""
    value = _value(token)
    kind, digits = _decimals(token)
    for v in printed:
        if kind == "dec" and math.isclose(round(v, digits), value, rel_tol=1e-9, abs_tol=10 ** -(digits + 3)):
            return True
        if kind == "sig" and v != 0 and value != 0:
            scale = 10 ** (math.floor(math.log10(abs(v))) - digits + 1)
            if math.isclose(round(v / scale) * scale, value, rel_tol=1e-6):
                return True
    return False


def problems(path):
    """What is wrong with the prose of the notebook at ``path``: a list of sentences, empty when every
    run-dependent number of its markdown is a stored output (or allowed) and every comparison word
    has a printed verdict."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    allowed = nb.get("metadata", {}).get("pdlearn", {}).get("prose_numbers", {})
    cells = nb.get("cells", [])
    printed = [v for c in cells if c.get("cell_type") == "code" for v in output_numbers(c.get("outputs", []))]
    judged = {i for i, c in enumerate(cells) if c.get("cell_type") == "code"
              and any(VERDICT.search(_text(o)) for o in c.get("outputs", []))}
    found = []
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        source = _join(cell.get("source", ""))
        for token, unit, context in prose_numbers(source):
            if token in allowed or f"{token}{unit}" in allowed or _matches(token, unit, printed):
                continue
            found.append(f"cell {i}: {token}{unit} is in no stored output (\"...{context}...\"); print it in a "
                         f"cell, or allow it in metadata.pdlearn.prose_numbers with its reason")
        if not judged & set(range(i - NEAR, i + NEAR + 1)):
            for m in COMPARISON.finditer(_strip(source)):
                found.append(f"cell {i}: \"{m.group(0)}\" compares, but no cell within {NEAR} of it prints a verdict "
                             "(better, tie, worse) of pdl.metrics.verdict")
    return found


if __name__ == "__main__":
    bad = 0
    for notebook in sys.argv[1:]:
        for line in problems(notebook):
            print(f"{notebook}: {line}")
            bad += 1
    sys.exit(1 if bad else 0)
