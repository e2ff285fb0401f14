"""Read the book as a person would, in a real browser (`make browser-test`).

1. JupyterLab, headless on 127.0.0.1 with a random token: open the tutorial, Run > Run All Cells, wait for the
   kernel, check that no cell failed and every figure rendered, close the notebook without saving.
   The tutorial's quick settings are used (BONEXAGE_FAST=1), and JupyterLab works on a copy of it
   (nbs/_browser_test_*.ipynb, removed at the end), so nothing in the repository changes even if a save slipped.
2. The HTML book in _docs/ (`make docs`), served over http: the index and one chapter load without console
   errors or failed requests, every image loads, the formulas are typeset, the sidebar lists every chapter.

Screenshots go to .browser-test/. Chromium is Debian's (/usr/bin/chromium), driven by Playwright.
"""
import argparse, contextlib, functools, hashlib, json, os, re, secrets, shutil, signal, socket, subprocess, sys, tempfile
import threading, time, urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
NBS, SITE, SHOTS = ROOT / "nbs", ROOT / "_docs", ROOT / ".browser-test"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# JupyterLab user settings: no autosave (the run must not be written back), every cell kept in the page (so the
# checks see all outputs), no news or update checks (no network).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}
# JupyterLab 4 draws an error exactly like stderr text (both data-mime-type="application/vnd.jupyter.stderr"),
# so failed cells are read from the notebook's model (the app is exposed to the page with expose_app_in_browser).
FAILED_CELLS_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets.flatMap((cell, i) =>
    (cell.model.toJSON().outputs ?? []).filter(o => o.output_type === 'error')
      .map(o => `cell ${i + 1}: ${o.ename}: ${o.evalue}`.slice(0, 300)))"""
IMAGES_JS = """(scope) => [...document.querySelectorAll(scope)].map(img =>
    ({src: img.src.slice(0, 80), ok: img.complete && img.naturalWidth > 0}))"""


def log(*args): print("browser-test:", *args, flush=True)


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nobody listens on now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(p):
    "Debian's Chromium, headless, with no background traffic."
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# MathJax 2 declares a placeholder font at about:blank (its "MathJax_Blank" probe); Chromium logs the refused
# request, and nothing on the page depends on it. Anything else is a problem.
BENIGN = ("Access to font at 'about:blank'",)


def watch(page) -> list:
    "Collect console errors, page errors, failed requests and HTTP errors of `page` into a list."
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith(BENIGN) and "net::ERR_FAILED" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})")
            if r.url != "about:blank" else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return problems


@contextlib.contextmanager
def jupyter_lab(work: Path, port: int, token: str):
    "Start JupyterLab on 127.0.0.1:`port` serving nbs/; stop it (and its kernels) on exit."
    settings = work / "settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items() if k != "IN_TEST"}
    env.update(BONEXAGE_FAST="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), JUPYTER_CONFIG_DIR=str(work / "config"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTER_PLATFORM_DIRS="1")
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={NBS}", f"--config={ROOT / '.ci' / 'jupyter_server_config.py'}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={work / 'workspaces'}"]
    if os.geteuid() == 0: cmd.append("--allow-root")  # CI containers run as root
    with open(work / "jupyter.log", "w") as out:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (work / "jupyter.log").read_text()[-2000:])
                time.sleep(0.5)
        yield server
    finally:
        stop(server, "JupyterLab")


def stop(proc, what: str, grace: float = 15):
    "Ask `proc` to stop, wait `grace` seconds, then kill its process group (kernels included)."
    if proc.poll() is not None: return
    proc.send_signal(signal.SIGTERM)  # Jupyter's clean shutdown: kernels first, then the server
    try: proc.wait(grace)
    except subprocess.TimeoutExpired:
        log(f"{what} did not stop in {grace:.0f} s: killing it")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def lab_test(p, notebook: str, timeout: float) -> list:
    "Run `notebook` through the JupyterLab UI; return the problems found (empty when it passes)."
    source = NBS / notebook
    copy = NBS / f"_browser_test_{notebook}"
    checkpoints = NBS / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    shutil.copy2(source, copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    port, token = free_port(), secrets.token_hex(16)
    problems = []
    try:
        with tempfile.TemporaryDirectory(prefix="bonexage-lab-") as work, jupyter_lab(Path(work), port, token):
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page_errors = watch(page)
            start = time.time()
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{copy.name}?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            wait_kernel(page, timeout=120)
            log(f"JupyterLab open with {copy.name} in {time.time() - start:.0f} s; Run > Run All Cells")
            menu(page, "Run", "Run All Cells")
            start = time.time()
            state = wait_all_run(page, timeout=timeout)
            log(f"{state['done']} of {state['cells']} code cells ran in {time.time() - start:.0f} s")
            if state["done"] < state["cells"]:
                problems.append(f"{state['cells'] - state['done']} code cells did not run (Run All stops at an error)")
            page.screenshot(path=str(SHOTS / "lab_after_run.png"))
            problems += page.evaluate(FAILED_CELLS_JS)
            images = page.evaluate(IMAGES_JS, ".jp-OutputArea-output img")
            problems += [f"figure did not render: {i['src']}" for i in images if not i["ok"]]
            if not images: problems.append("no figure in the outputs")
            log(f"{len(images)} figures rendered, {len(problems)} problems")
            if images: page.locator(".jp-OutputArea-output img").first.screenshot(path=str(SHOTS / "lab_figure.png"))
            close_without_saving(page)
            problems += [f"JupyterLab page: {e}" for e in page_errors if "favicon" not in e]
            browser.close()
            if hashlib.sha256(copy.read_bytes()).hexdigest() != digest:
                problems.append(f"{copy.name} changed on disk: the notebook was saved")
            problems += save_check(port, token, copy)
    finally:
        copy.unlink(missing_ok=True)
        (checkpoints / f"{copy.stem}-checkpoint.ipynb").unlink(missing_ok=True)
        if not had_checkpoints and checkpoints.exists() and not any(checkpoints.iterdir()): checkpoints.rmdir()
    return problems


def kernel_state(page) -> dict:
    "The kernel's status in the toolbar, and the code cells' prompts: run (`[3]`), queued or running (`[*]`)."
    return page.evaluate("""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.innerText);
        return {status: document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status'),
                kernel: document.querySelector('.jp-KernelName')?.innerText ?? '',
                done: prompts.filter(t => /\\[\\d+\\]/.test(t)).length,
                busy: prompts.filter(t => t.includes('*')).length, cells: prompts.length}}""")


def save_check(port: int, token: str, path: Path) -> list:
    "Save `path` through Jupyter's contents API with run counts and editor metadata added: the file must come out clean."
    url, auth = f"http://127.0.0.1:{port}/api/contents/{path.name}", {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=30) as r: model = json.load(r)
    nb = model["content"]
    nb["metadata"]["language_info"] = {"name": "python", "version": "3"}
    for number, cell in enumerate(nb["cells"], 1):
        cell["metadata"]["collapsed"] = True
        if cell["cell_type"] == "code": cell["execution_count"] = number
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    put = urllib.request.Request(url, data=body, method="PUT", headers={**auth, "Content-Type": "application/json"})
    urllib.request.urlopen(put, timeout=30).close()
    saved = path.read_bytes()
    cleaned = subprocess.run([sys.executable, str(ROOT / ".ci" / "nbclean_filter.py")], input=saved,
                             capture_output=True, check=True).stdout
    if saved != cleaned or b'"collapsed"' in saved or b'"language_info"' in saved:
        return [f"saving {path.name} from Jupyter kept what nbdev_clean removes (pre-save hook not active?)"]
    log("a notebook saved through Jupyter comes out clean")
    return []


def wait_kernel(page, timeout: float):
    "Wait for an idle kernel, choosing the notebook's kernel if JupyterLab asks which one to start."
    deadline = time.time() + timeout
    while time.time() < deadline:
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count(): dialog.locator("button", has_text=re.compile("^Select$")).click()
        state = kernel_state(page)
        if state["status"] == "idle" and state["kernel"] and "No Kernel" not in state["kernel"]: return
        page.wait_for_timeout(1000)
    raise TimeoutError(f"no idle kernel after {timeout:.0f} s: {kernel_state(page)}")


def wait_all_run(page, timeout: float) -> dict:
    "Wait until cells have run and the kernel has stayed idle with nothing queued for 6 s; return the state."
    deadline, quiet = time.time() + timeout, 0
    while time.time() < deadline:
        state = kernel_state(page)
        quiet = quiet + 1 if state["status"] == "idle" and state["busy"] == 0 and state["done"] else 0
        if quiet == 3: return state
        page.wait_for_timeout(2000)
    raise TimeoutError(f"Run All was not done after {timeout:.0f} s: {kernel_state(page)}")


def menu(page, name: str, item: str):
    "Choose `item` in the menu bar's `name` menu, as a person would."
    page.locator(".lm-MenuBar-itemLabel", has_text=name).first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled)").filter(
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$"))).first.click()


def close_without_saving(page):
    "File > Close Tab, then answer the 'save changes?' question with Discard."
    page.keyboard.press("Escape")
    menu(page, "File", "Close Tab")
    page.locator(".jp-Dialog button", has_text="Discard").click(timeout=10_000)
    page.wait_for_selector(".jp-Notebook", state="detached", timeout=10_000)


@contextlib.contextmanager
def http_server(folder: Path, port: int):
    "Serve `folder` on 127.0.0.1:`port` from a thread; shut it down on exit."
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try: yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def docs_test(p, chapter: str) -> list:
    "Open the HTML book's index and `chapter`; return the problems found."
    if not (SITE / "index.html").exists(): return ["_docs/index.html is missing: run `make docs` first"]
    chapters = len([n for n in NBS.glob("*.ipynb") if not n.name.startswith(("_", "."))])
    problems, port = [], free_port()
    with http_server(SITE, port):
        browser = launch(p)
        for name in ("index.html", chapter):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = watch(page)
            page.goto(f"http://127.0.0.1:{port}/{name}", wait_until="load", timeout=60_000)
            page.evaluate("async () => { for (let y = 0; y < document.body.scrollHeight; y += 600) {"
                          " window.scrollTo(0, y); await new Promise(r => setTimeout(r, 20)); } window.scrollTo(0, 0); }")
            page.wait_for_load_state("networkidle", timeout=30_000)
            page.wait_for_timeout(1500)  # MathJax typesets after load
            images = page.evaluate(IMAGES_JS, "article img, .md-content img")
            problems += [f"{name}: image did not load: {i['src']}" for i in images if not i["ok"]]
            links = page.evaluate("() => document.querySelectorAll('nav.md-nav--primary a.md-nav__link[href$=\".html\"]').length")
            if links < chapters: problems.append(f"{name}: sidebar lists {links} pages, the book has {chapters} notebooks")
            has_math = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedMarkdown')]"
                                     ".some(m => /\\$[^$\\n]+\\$/.test(m.innerText))")
            if has_math: problems.append(f"{name}: formulas left untypeset (MathJax did not run)")
            problems += [f"{name}: {e}" for e in errors]
            page.screenshot(path=str(SHOTS / f"docs_{Path(name).stem}.png"))
            log(f"{name}: {len(images)} images, {links} sidebar links, {len(errors)} console/network errors")
            page.close()
        browser.close()
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebook", default="11_tutorial.ipynb", help="notebook run in JupyterLab (in nbs/)")
    parser.add_argument("--chapter", default="04_layers.html", help="chapter page of _docs/ to open")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds Run All may take")
    parser.add_argument("--skip-lab", action="store_true", help="only test the HTML book")
    parser.add_argument("--skip-docs", action="store_true", help="only test JupyterLab")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("browser-test: stopped"))  # so servers are shut down
    if not Path(CHROMIUM).exists(): sys.exit(f"browser-test: {CHROMIUM} is missing: apt-get install -y chromium")
    SHOTS.mkdir(exist_ok=True)
    start, problems = time.time(), []
    with sync_playwright() as p:
        if not args.skip_lab: problems += lab_test(p, args.notebook, args.timeout)
        if not args.skip_docs: problems += docs_test(p, args.chapter)
    for problem in problems: print("FAILED:", problem, file=sys.stderr)
    log(f"{'FAILED' if problems else 'passed'} in {time.time() - start:.0f} s; screenshots in {SHOTS.name}/")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
