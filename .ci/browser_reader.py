"""Drive the interactive bone age reader (bonexage.reader) in a real browser, as a person would.

JupyterLab starts headless on 127.0.0.1 (a free port, a random token, root nbs/) and opens a scratch notebook that
this script writes into nbs/_test_browser_reader/ (ignored by git, skipped by nbdev, removed at the end). The notebook
builds a reader on synthetic phantoms and a tiny untrained ResNet-18. Through the page this script then:

1. runs the notebook (Run > Run All Cells) and waits for the widget;
2. picks a phantom in the list, sets the sex, types an age in years and months, and checks that the bone age, the
   chronological age, the SDS with its category and all three pictures (radiograph, Grad-CAM, growth chart) appear;
3. switches to birth date + radiograph date and checks the new age;
4. uploads a file that is not an image and checks that the reader shows its one-line error, with no traceback.

Screenshots go to .browser-test/reader_*.png. Chromium is Debian's (/usr/bin/chromium), driven by Playwright.
Exit status 0 when every check passed, 1 otherwise.
"""
import argparse, json, re, secrets, shutil, sys, tempfile, time
from pathlib import Path

from playwright.sync_api import sync_playwright

# JupyterLab, Chromium and the error check are browser_test.py's: one way to start and drive them
sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_test import CHROMIUM, FAILED_CELLS_JS, close_without_saving, free_port, jupyter_lab, launch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NBS, SHOTS = ROOT / "nbs", ROOT / ".browser-test"
SCRATCH = NBS / "_test_browser_reader"  # nbs/_test_*/ is in .gitignore; nbdev skips folders starting with _
# The scratch notebook: a reader on phantoms and a tiny untrained model (its ages are noise; the page is what is tested).
SETUP = """\
import torch
from bonexage.model import BoneAgeModel, ModelConfig
from bonexage.reader import BoneAgeReader, phantom_samples
torch.manual_seed(0)
model = BoneAgeModel(ModelConfig(backbone="resnet18", image_size=64))
samples = phantom_samples("phantoms", size=192)"""
SHOW = 'reader = BoneAgeReader(model, samples, device="cpu")\nreader'
GIRL = "phantom: girl, 7 years 6 months"  # one of phantom_samples' labels
IMAGES_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output .widget-image')].map(img =>
    ({ok: img.complete && img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight}))"""


def log(*args): print("browser-reader:", *args, flush=True)


def write_notebook(path: Path):
    "The scratch notebook: setup cell, then the reader as the last line of a cell."
    cell = lambda i, src: {"cell_type": "code", "id": f"reader{i}", "metadata": {}, "execution_count": None,
                           "outputs": [], "source": src}
    nb = {"cells": [cell(0, SETUP), cell(1, SHOW)], "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}}
    path.write_text(json.dumps(nb, indent=1))


def wait_kernel_ready(page, timeout: float, settle: float = 3):
    "Wait until the kernel reports idle for `settle` seconds in a row (it says idle once before it connects)."
    deadline, since = time.time() + timeout, None
    while time.time() < deadline:
        idle = page.evaluate("() => document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status')") == "idle"
        since = (since or time.time()) if idle else None
        if since and time.time() - since >= settle: return
        page.wait_for_timeout(250)
    raise TimeoutError(f"the kernel was not ready after {timeout:.0f} s")


def wait_all_ran(page, timeout: float):
    "Wait until every cell has run: each prompt shows an execution count, none `[ ]` or `[*]`."
    deadline, prompts = time.time() + timeout, []
    while time.time() < deadline:
        prompts = page.evaluate("() => [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].map(p => p.innerText.trim())")
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts): return
        page.wait_for_timeout(500)
    raise TimeoutError(f"the cells had not all run after {timeout:.0f} s (prompts: {prompts})")


class Reader:
    "The reader widget in the page: its fields, and what it shows."
    def __init__(self, page):
        self.page, self.out = page, page.locator(".jp-OutputArea-output").last

    def field(self, label: str):
        "The <input> of the text or date widget whose label is exactly `label`."
        return self.out.locator(".widget-inline-hbox", has=self.page.locator("label", has_text=re.compile(f"^{label}$"))).locator("input")

    def toggle(self, text: str):
        "Click the toggle button that reads exactly `text`."
        self.out.get_by_role("button", name=text, exact=True).click()

    def type_into(self, label: str, value: str):
        "Type a value and commit it as a person does (Enter for numbers, leaving the field for dates)."
        box = self.field(label)
        box.fill(value)
        box.press("Enter" if box.get_attribute("type") == "number" else "Tab")

    def result(self) -> str: return self.out.locator(".widget-html").first.inner_text() + "\n" + \
                                    self.out.locator(".widget-html").nth(1).inner_text()

    def wait_for_text(self, pattern: str, timeout: float) -> str:
        "The status and result text once it matches `pattern` (a regex); TimeoutError with what was shown otherwise."
        deadline, text = time.time() + timeout, ""
        while time.time() < deadline:
            text = self.result()
            if re.search(pattern, text): return text
            self.page.wait_for_timeout(250)
        raise TimeoutError(f"after {timeout:.0f} s the reader shows {text!r}, not /{pattern}/")


def check(problems: list, what: str, ok: bool, detail: str = ""):
    "Record a failed check."
    log(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))
    if not ok: problems.append(f"{what}{': ' + detail if detail else ''}")


def drive(page, problems: list, wait: float):
    "The user's session: pick, set sex and age, read; dates; a bad upload."
    reader = Reader(page)
    reader.out.locator(".widget-dropdown select").wait_for(timeout=wait * 1000)
    reader.wait_for_text(r"Bone age \d+ years?", wait)  # the first sample is read as soon as the reader is built
    start = time.time()
    reader.out.locator(".widget-dropdown select").select_option(label=GIRL)
    reader.toggle("female")
    reader.toggle("years and months")
    reader.type_into("years", "7")
    reader.type_into("months", "6")
    text = reader.wait_for_text(r"Chronological age\s+7 years 6 months \(90\.0 months\)[\s\S]*SDS", wait)
    log(f"result after picking a phantom and typing an age: {time.time() - start:.1f} s")
    check(problems, "bone age shown", bool(re.search(r"Bone age \d+ years? \d+ months? \(\d+\.\d months\)", text)), text)
    check(problems, "BA - CA shown", bool(re.search(r"Bone age - chronological age\s+[+-]\d+\.\d months", text)), text)
    check(problems, "SDS and category shown", bool(re.search(r"SDS\s+[+-]\d+\.\d \((delayed|normal|advanced)\)", text)), text)
    check(problems, "sex shown as female", bool(re.search(r"Sex\s+female", text)), text)
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output .widget-image')]"
                           ".filter(i => i.complete && i.naturalWidth > 0).length >= 3", timeout=wait * 1000)
    images = page.evaluate(IMAGES_JS)
    check(problems, "radiograph, Grad-CAM and growth chart drawn", [i["ok"] for i in images] == [True] * 3, str(images))
    check(problems, "growth chart is the 400 px chart", len(images) == 3 and images[2]["width"] == 400, str(images))
    reader.out.screenshot(path=str(SHOTS / "reader_result.png"))

    reader.toggle("dates")
    reader.type_into("birth date", "2016-03-01")
    reader.type_into("radiograph date", "2025-09-01")
    text = reader.wait_for_text(r"Chronological age\s+9 years 6 months \(114\.0 months\)", wait)
    check(problems, "age from birth and radiograph dates", "SDS" in text, text)

    with tempfile.TemporaryDirectory(prefix="bonexage-reader-upload-") as folder:
        bad = Path(folder) / "not-a-radiograph.png"
        bad.write_text("these are words, not pixels\n")
        with page.expect_file_chooser(timeout=wait * 1000) as chooser:  # the file dialog a click opens
            reader.out.locator(".widget-upload").click()
        chooser.value.set_files(str(bad))
        text = reader.wait_for_text(r"error: not-a-radiograph\.png: ", wait)
    check(problems, "a bad upload shows the reader's one-line error",
          "Traceback" not in text and "bonexage-reader-" not in text and text.count("error:") == 1, text)
    check(problems, "the error clears the old pictures", not any(i["ok"] for i in page.evaluate(IMAGES_JS)))
    reader.out.screenshot(path=str(SHOTS / "reader_error.png"))


def session(page, url: str, problems: list, wait: float, run_timeout: float):
    "Open the scratch notebook at `url`, run all its cells, and drive the reader."
    start = time.time()
    page.goto(url, timeout=wait * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=wait * 1000)
    wait_kernel_ready(page, wait)
    log(f"JupyterLab open in {time.time() - start:.1f} s; Run > Run All Cells")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()  # its command id varies by version
    start = time.time()
    wait_all_ran(page, run_timeout)
    log(f"cells ran in {time.time() - start:.1f} s")
    problems += page.evaluate(FAILED_CELLS_JS)
    drive(page, problems, wait)


def run(wait: float, run_timeout: float) -> list:
    "Start JupyterLab, drive the reader, stop everything; return the problems found."
    problems, port, token = [], free_port(), secrets.token_hex(16)
    SCRATCH.mkdir(exist_ok=True)
    write_notebook(SCRATCH / "reader.ipynb")
    try:
        with tempfile.TemporaryDirectory(prefix="bonexage-lab-") as work, jupyter_lab(Path(work), port, token), \
             sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            try: session(page, f"http://127.0.0.1:{port}/lab/tree/{SCRATCH.name}/reader.ipynb?token={token}", problems,
                         wait, run_timeout)
            except Exception as e:  # a wait ran out or an element is missing: say what, keep a picture of it
                problems.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
                page.screenshot(path=str(SHOTS / "reader_failure.png"))
            page.screenshot(path=str(SHOTS / "reader_page.png"))
            try: close_without_saving(page)
            except Exception as e: problems.append(f"could not close the notebook tab: {type(e).__name__}")
            browser.close()
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wait", type=float, default=60, help="seconds any one step of the page may take (default 60)")
    parser.add_argument("--run-timeout", type=float, default=300, help="seconds the notebook's cells may take (default 300)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists(): sys.exit(f"browser-reader: {CHROMIUM} is missing: apt-get install -y chromium")
    SHOTS.mkdir(exist_ok=True)
    for old in SHOTS.glob("reader_*.png"): old.unlink()  # no picture of an earlier run left to mislead
    start = time.time()
    problems = run(args.wait, args.run_timeout)
    for problem in problems: print("FAILED:", problem, file=sys.stderr)
    log(f"{'FAILED' if problems else 'passed'} in {time.time() - start:.0f} s; screenshots in {SHOTS.name}/reader_*.png")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
