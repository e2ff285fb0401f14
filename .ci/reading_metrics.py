"""How the book reads, notebook by notebook (`make metrics`; `--check` fails when a target is missed).

Columns: code cells with outputs, figures (image/png outputs), markdown cells, median and largest words per
markdown cell, exported code cells over 25 lines, and mentions of "the original" (markdown and code comments).
Targets for the chapters 01-10: a median of at most 30 words per markdown cell (over all their cells and in
each chapter), no markdown cell over 150
words (13_rsna100 and the appendix 99_appendix_original are allowed longer ones), and at most 10 mentions of
"the original" in all.
"""
import argparse, json, re, statistics, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
MEDIAN_WORDS, MAX_WORDS, MAX_ORIGINAL, MAX_EXPORT_LINES = 30, 150, 10, 25
LONG_CELLS_ALLOWED = {"13_rsna100.ipynb", "99_appendix_original.ipynb"}
EXPORTS = ("export", "exporti", "exports")


def words(markdown: str) -> int:
    "Words of prose a reader reads: code blocks, tables, HTML tags, link targets and markup left out."
    text = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    text = re.sub(r"^\s*\|.*$", " ", text, flags=re.M)  # table rows (generated or reference, not prose)
    text = re.sub(r"<[^>]+>|\]\([^)]*\)", " ", text)
    return len(re.findall(r"[\w'’-]+", text))


def directive_names(code: str) -> set:
    "Names of the `#|` directives at the top of a code cell."
    names = set()
    for line in code.splitlines():
        m = re.match(r"\s*#\s*\|\s*([\w-]+)", line)
        if m: names.add(m.group(1))
        elif line.strip(): break
    return names


def comments(code: str) -> str:
    "The `#` comments of a code cell (directives excluded)."
    return "\n".join(m.group(1) for m in re.finditer(r"#(?!\s*\|)(.*)$", code, re.M))


def chapter(name: str) -> bool:
    "Chapters 01 to 10 (with lettered insertions such as 02a)."
    m = re.match(r"(\d+)[a-z]?_", name)
    return bool(m) and 1 <= int(m.group(1)) <= 10


def measure(path: Path) -> dict:
    "The reading metrics of one notebook."
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    src = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
    md = [words(src(c)) for c in cells if c["cell_type"] == "markdown"]
    code = [c for c in cells if c["cell_type"] == "code"]
    long_exports = [c for c in code if directive_names(src(c)) & set(EXPORTS)
                    and len([l for l in src(c).splitlines() if not re.match(r"\s*#\s*\|", l)]) > MAX_EXPORT_LINES]
    text = "\n".join(src(c) for c in cells if c["cell_type"] == "markdown") + "\n" + \
        "\n".join(comments(src(c)) for c in code)
    return dict(name=path.name, words=md, with_outputs=sum(bool(c.get("outputs")) for c in code),
                figures=sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])),
                markdown=len(md), median=statistics.median(md) if md else 0, max=max(md, default=0),
                long_exports=len(long_exports), original=len(re.findall(r"\bthe original\b", text, re.I)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks (default: every notebook in nbs/)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target for chapters 01-10 is missed")
    args = parser.parse_args()
    paths = [Path(p) for p in args.notebooks] or sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
    rows = [measure(p) for p in paths]
    head = f"{'notebook':<28}{'outputs':>8}{'figures':>8}{'md':>5}{'median':>8}{'max':>6}{'long export':>12}{'original':>9}"
    print(head)
    for r in rows:
        print(f"{r['name']:<28}{r['with_outputs']:>8}{r['figures']:>8}{r['markdown']:>5}{r['median']:>8g}{r['max']:>6}"
              f"{r['long_exports']:>12}{r['original']:>9}")
    chapters = [r for r in rows if chapter(r["name"])]
    failures = []
    if chapters:
        md_median = statistics.median([w for r in chapters for w in r["words"]] or [0])
        original = sum(r["original"] for r in chapters)
        print(f"{'chapters 01-10':<28}{sum(r['with_outputs'] for r in chapters):>8}"
              f"{sum(r['figures'] for r in chapters):>8}{sum(r['markdown'] for r in chapters):>5}{md_median:>8g}"
              f"{max(r['max'] for r in chapters):>6}{sum(r['long_exports'] for r in chapters):>12}{original:>9}")
        if md_median > MEDIAN_WORDS:
            failures.append(f"chapters 01-10: median {md_median:g} words per markdown cell (target <= {MEDIAN_WORDS})")
        failures += [f"{r['name']}: median {r['median']:g} words per markdown cell (target <= {MEDIAN_WORDS})"
                     for r in chapters if r["median"] > MEDIAN_WORDS]
        if original > MAX_ORIGINAL:
            failures.append(f"chapters 01-10 mention 'the original' {original} times (target <= {MAX_ORIGINAL})")
    failures += [f"{r['name']}: a markdown cell of {r['max']} words (target <= {MAX_WORDS})"
                 for r in rows if r["max"] > MAX_WORDS and r["name"] not in LONG_CELLS_ALLOWED]
    for f in failures: print("target missed:", f)
    if not failures: print("all reading targets met")
    sys.exit(1 if args.check and failures else 0)


if __name__ == "__main__":
    main()
