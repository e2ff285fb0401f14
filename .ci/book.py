"""Re-execute the book's notebooks at their full settings and store the outputs (`make book`).

Each notebook runs in a fresh Jupyter kernel (nbclient), in reading order, with `nbs/` as the working
directory, the way a reader runs it in JupyterLab: no `IN_TEST`, so the notebooks use their full settings.
Cells are skipped the way `nbdev_test` skips them: `#| eval: false`, `nbdev_export()` calls, and cells carrying
a skip flag (`#| cuda` when there is no GPU, plus any flag given with `--skip`). The outputs are then cleaned
with `nbdev_clean` (settings.ini keeps outputs), the repository path is replaced by `.`, and any other path of
this machine left in an output (temporary folders, the home folder) fails the run with a list of the cells.

    python .ci/book.py                        # every notebook, two at a time
    python .ci/book.py nbs/04_layers.ipynb    # one notebook
    python .ci/book.py --size-only            # only check that nbs/ stays small
"""
import argparse, os, re, subprocess, sys, tempfile, time, traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
MAX_NBS_MB = 25
# Kernel-side set-up, run before the first cell and not stored: text progress bars (tqdm.auto would pick
# Jupyter widgets, whose state a clean notebook does not keep, so a reader would see "model not found").
PRELUDE = "import tqdm.auto as _ta, tqdm.std as _ts; _ta.tqdm, _ta.trange = _ts.tqdm, _ts.trange; del _ta, _ts"


def reading_order(nbs_dir: Path = NBS) -> list:
    "The book's notebooks: index.ipynb first, then by file name; drafts (`_name`) are left out."
    nbs = sorted(p for p in nbs_dir.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    return sorted(nbs, key=lambda p: (p.name != "index.ipynb", p.name))


def directives(source: str) -> dict:
    "nbdev's own reading of the `#|` lines at the top of a cell ({'eval:': ['false'], 'cuda': []})."
    from nbdev.process import extract_directives
    return extract_directives(SimpleNamespace(source=source), remove=False)


def skip_reason(source: str, skip_flags) -> str:
    "Why `nbdev_test` would not run this code cell with these flags; '' when it runs."
    if "nbdev_export" + "(" in source: return "nbdev_export()"
    found = directives(source)
    if found.get("eval:", [""])[0].lower() == "false": return "eval: false"
    flags = sorted(set(skip_flags) & set(found))
    return flags[0] if flags else ""


def _merge_streams(outputs: list) -> list:
    "Merge consecutive stream outputs of the same name and apply carriage returns (progress bars)."
    merged = []
    for out in outputs:
        if out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                and merged[-1]["name"] == out["name"]:
            merged[-1]["text"] += out["text"]
        else: merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            text = re.sub(r"[^\n]\x08", "", out["text"])
            out["text"] = re.sub(r"[^\n]*\r(?=[^\n])", "", text)
    return [o for o in merged if not (o.get("output_type") == "stream" and not o["text"].strip())]


def _texts(out: dict):
    "Yield (container, key) for every text field of one output, so callers can read or rewrite it."
    if "text" in out: yield out, "text"
    if "traceback" in out:
        for i in range(len(out["traceback"])): yield out["traceback"], i
    for mime, value in out.get("data", {}).items():
        if isinstance(value, str) and not mime.startswith("image/") or mime == "image/svg+xml": yield out["data"], mime


def machine_paths() -> list:
    "Folders of this machine that must not appear in a stored output."
    places = {tempfile.gettempdir(), str(ROOT.parent)}
    if str(Path.home()) not in ("/", str(ROOT)): places.add(str(Path.home()))
    return sorted(places)


def scrub_paths(nb, root: Path = ROOT, forbidden=None) -> list:
    "Replace `root` by '.' and temporary folders by '<tmp>' in every text output; return (cell, snippet) for other machine paths."
    roots = sorted({str(root), str(root.resolve())}, key=len, reverse=True)
    root_re = re.compile("|".join(re.escape(r) for r in roots) + r"(?![\w.-])")
    # a throwaway folder of tempfile (tmpab12cd, bonexage-xyz, ipykernel_123) means nothing to a reader: "<tmp>"
    temp_re = re.compile(re.escape(tempfile.gettempdir()) + r"/(?:tmp|ipykernel_|bonexage-)[\w.-]*")
    forbidden_re = re.compile("(" + "|".join(re.escape(p) for p in forbidden or machine_paths()) + r")(?![\w.-])")
    found = []
    for number, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []):
            for holder, key in _texts(out):
                text = holder[key]
                if isinstance(text, list): text = "".join(text)
                text = temp_re.sub("<tmp>", root_re.sub(".", text))
                holder[key] = text
                for m in forbidden_re.finditer(text):
                    found.append((number, text[max(0, m.start() - 30):m.end() + 40].replace("\n", " ")))
    return found


def run_notebook(path: str, skip_flags: list, cell_timeout: int) -> dict:
    "Execute one notebook in a fresh kernel, store its outputs and clean it; return a summary."
    import nbformat
    from nbclient import NotebookClient
    path, start = Path(path), time.time()
    summary = dict(name=path.name, ok=False, seconds=0.0, run=0, skipped={}, paths=[], error="")
    try:
        nb = nbformat.read(path, as_version=4)
        if nb.metadata.get("kernelspec", {}).get("language", "python") != "python":
            summary.update(ok=True, error="not a Python notebook: left as it is"); return summary
        os.environ.pop("IN_TEST", None)  # nbdev_test's switch to tiny settings: the book runs the full ones
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"): os.environ.setdefault(var, "1")
        client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not the plain-TCP notice
                                resources={"metadata": {"path": str(path.parent)}})
        with client.setup_kernel():
            nb.cells.insert(0, nbformat.v4.new_code_cell(PRELUDE))  # nbclient stores a cell back at its index
            client.execute_cell(nb.cells[0], 0)
            nb.cells.pop(0)
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code": continue
                reason = skip_reason(cell.source, skip_flags)
                if reason:
                    cell.outputs = []
                    summary["skipped"][reason] = summary["skipped"].get(reason, 0) + 1
                    continue
                client.execute_cell(cell, index)
                # `#| output: false` (nbdev/Quarto: run, show nothing): e.g. figures of licensed radiographs
                cell.outputs = [] if directives(cell.source).get("output:") == ["false"] else _merge_streams(cell.outputs)
                summary["run"] += 1
        summary["paths"] = scrub_paths(nb, ROOT)
        nbformat.write(nb, path)
        subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(path)], cwd=ROOT, check=True)
        summary["ok"] = not summary["paths"]
    except Exception as e:  # one broken notebook must not stop the others: report it at the end
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # the kernel's traceback comes coloured
        lines = text.splitlines() or traceback.format_exc().splitlines()
        summary["error"] = "\n".join(lines[-15:])
    summary["seconds"] = time.time() - start
    return summary


def has_gpu() -> bool:
    "Whether torch sees a CUDA device (asked in a child process so the workers do not inherit torch)."
    code = "import torch; print(torch.cuda.is_available())"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return res.stdout.strip() == "True"


def nbs_size(nbs_dir: Path = NBS) -> list:
    "(bytes, path) of every file under `nbs_dir` that git would keep (tracked or not ignored), largest first."
    res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", str(nbs_dir)],
                         cwd=ROOT, capture_output=True, text=True)
    files = [ROOT / f for f in res.stdout.split("\0") if f] if res.returncode == 0 else \
        [p for p in nbs_dir.rglob("*") if p.is_file()]
    return sorted(((p.stat().st_size, p) for p in files if p.exists()), reverse=True)


def check_size(limit_mb: float = MAX_NBS_MB) -> bool:
    "Print the size of nbs/ and its largest notebooks; False when it passes `limit_mb`."
    sizes = nbs_size()
    total = sum(s for s, _ in sizes) / 2**20
    print(f"nbs/ holds {total:.1f} MB (limit {limit_mb} MB); largest: " +
          ", ".join(f"{p.name} {s / 2**20:.2f} MB" for s, p in sizes[:3]))
    if total > limit_mb: print(f"FAILED: nbs/ is over {limit_mb} MB: lower figure sizes/dpi or print less", file=sys.stderr)
    return total <= limit_mb


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: the whole book in reading order)")
    parser.add_argument("--workers", type=int, default=2, help="notebooks run at the same time")
    parser.add_argument("--skip", default="", help="extra flags whose cells are skipped, e.g. 'slow'")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds one cell may run")
    parser.add_argument("--size-only", action="store_true", help="only check the size of nbs/")
    args = parser.parse_args()
    if args.size_only: sys.exit(0 if check_size() else 1)
    notebooks = [Path(p).resolve() for p in args.notebooks] or reading_order()
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing: sys.exit(f"book: no such notebook: {' '.join(missing)}")
    skip_flags = args.skip.split() + ([] if has_gpu() else ["cuda"])
    print(f"book: {len(notebooks)} notebooks, {args.workers} at a time, skipping cells flagged: "
          f"eval: false {' '.join(skip_flags)}", flush=True)
    start, results = time.time(), {}
    with ProcessPoolExecutor(max_workers=max(1, min(args.workers, len(notebooks)))) as pool:
        jobs = {pool.submit(run_notebook, str(p), skip_flags, args.cell_timeout): p for p in notebooks}
        for job in as_completed(jobs):
            r = results[jobs[job]] = job.result()
            skipped = ", ".join(f"{n} {k}" for k, n in r["skipped"].items())
            state = "ok" if r["ok"] else "FAILED"
            print(f"{r['seconds']:7.1f} s  {r['name']:<28} {state}: {r['run']} cells run"
                  + (f", skipped {skipped}" if skipped else ""), flush=True)
    failed = [r for r in results.values() if not r["ok"]]
    for r in failed:
        print(f"\n{r['name']}:", file=sys.stderr)
        if r["error"]: print(r["error"], file=sys.stderr)
        for number, snippet in r["paths"]:
            print(f"  cell {number}: machine path in an output: ...{snippet}...", file=sys.stderr)
    print(f"book: {time.time() - start:.0f} s in all, {len(results) - len(failed)} of {len(results)} notebooks ok")
    size_ok = check_size()
    sys.exit(1 if failed or not size_ok else 0)


if __name__ == "__main__":
    main()
