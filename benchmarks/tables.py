#!/usr/bin/env python3
"""The results tables of README.md, BENCHMARKS.md and nbs/13_rsna100.ipynb, generated from the JSON results.

Every number in these tables is read from a file in benchmarks/results/ (or benchmarks/results/rsna100/); none is
typed by hand. A document holds a table between two markers:

    <!-- table:rsna100-results -->
    (generated; do not edit)
    <!-- /table:rsna100-results -->

    python benchmarks/tables.py --list                 # the table names
    python benchmarks/tables.py rsna100-results        # print one table
    python benchmarks/tables.py --write [FILES]        # regenerate the text between the markers
    python benchmarks/tables.py --check [FILES]        # exit 1 if any table differs from its JSON (for CI)
    python benchmarks/tables.py --results /tmp/r cpu-speed   # a table from the JSON files of another folder

FILES default to README.md, BENCHMARKS.md, nbs/index.ipynb and nbs/13_rsna100.ipynb; in a notebook, markers are
looked for in markdown cells. An unknown table name or an unclosed marker is an error (exit 2).
"""
import argparse, json, re, shlex, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RSNA100 = RESULTS / "rsna100"
DEFAULT_FILES = ["README.md", "BENCHMARKS.md", "nbs/index.ipynb", "nbs/13_rsna100.ipynb"]
MARKER = re.compile(r"<!-- table:([\w.-]+) -->(.*?)<!-- /table:\1 -->", re.S)
OPENING = re.compile(r"<!-- (/?)table:([\w.-]+) -->")

# Goals set for the benchmarks (not measurements): used to say "met" or "missed".
# RSNA 100x100 validation MAE, months, per preset (`ablation`: the first cpu recipe, whose goal was 15)
PRESET_TARGETS = {"cpu": 13.5, "cv": 12.5, "gpu": 9.0, "ablation": 15.0}
CACHE_TARGET, PIPELINE_TARGET, STEP_TARGET, PREDICTOR_TARGET = 20.0, 4.0, 1000.0, 0.85
RSNA100_DATA = "RSNA training images at 100 x 100, 90/10 split (seed 0)"
BACKBONE_NAMES = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "convnext_tiny": "ConvNeXt-Tiny",
                  "convnext_atto": "ConvNeXt-atto"}


# ---------------------------------------------------------------------------------------------------------- helpers
def load(path) -> dict:
    "A JSON results file, relative to benchmarks/results/."
    p = RESULTS / path
    try: return json.loads(p.read_text())
    except OSError as e: raise SystemExit(f"{p}: cannot read: {e.strerror}")
    except json.JSONDecodeError as e: raise SystemExit(f"{p}: not valid JSON: {e}")


def num(x, digits=1) -> str:
    "A number with thousands separators and a fixed number of decimals."
    return f"{x:,.{digits}f}"


def link(path) -> str:
    "A markdown link to a results file, relative to the repository root (README.md, BENCHMARKS.md)."
    return f"[JSON](benchmarks/results/{path})"


def table(header, rows) -> str:
    "A markdown table."
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(m: dict) -> str:
    "The machine of a result in a few words, from the JSON's `machine` record (either schema)."
    m = m or {}
    cores = m.get("cpu_count", m.get("cores", m.get("cpus")))
    threads = m.get("torch_threads", m.get("threads"))
    cpu = m.get("cpu")
    cpu = (cpu.replace("(R)", "").replace("Processor", "").strip() if cpu else
           ("x86_64 CPU" if "x86_64" in m.get("platform", "") else "CPU"))
    if m.get("gpu"):
        return f"one {m['gpu']}" + (f", {cores} CPU cores" if cores else "")
    s = f"{cores}-core {cpu}" if cores else cpu
    if threads: s += f", {threads} torch thread{'s' if threads != 1 else ''}"
    return s


def when(m: dict) -> str:
    "The date of a result, when recorded."
    t = (m or {}).get("time")
    return t.split(" ")[0] if t else "date not recorded"


def command(cmd: str) -> str:
    "A benchmark's command as a reader types it: no --out, the machine's own folders replaced by placeholders."
    words, out = shlex.split(cmd), []
    skip = False
    for i, w in enumerate(words):
        if skip: skip = False; continue
        if w in ("--out", "-o", "--output"): skip = True; continue
        if w.startswith(("--out=", "--output=")): continue
        if w.startswith("/"):
            w = ("RSNA_RAW" if "rsna-samples/raw" in w else "CHECKPOINT" if w.endswith((".pth", ".pt")) else
                 "SYNTHETIC_512PX" if w.endswith("boneage-training-dataset") else "DIR")
        out.append(w)
    return "`python " + " ".join(out) + "`"


def caption(data: str, m: dict, path: str, cmd: str = None) -> str:
    "The line under a table: the data, the machine, the date and the result file."
    s = f"*Data: {data}. Machine: {machine(m)}, {when(m)}. Source: {link(path)}"
    return s + (f", {command(cmd)}.*" if cmd else ".*")


def rsna_raw(config: dict) -> str:
    "The data of a benchmark run, from its config."
    n, items = config.get("unique_images"), config.get("items")
    images = config.get("images") or config.get("data") or ""
    what = ("raw RSNA training radiographs (about 1514 x 2044 and larger)" if "rsna-samples/raw" in images else
            "synthetic 512 px phantoms (`benchmarks/make_data.py`)" if images.endswith("boneage-training-dataset")
            else "random batches")
    return f"{n} {what} repeated to {items} items" if n else what


# ---------------------------------------------------------------------------------------------------- BENCHMARKS.md
def cpu_loader() -> str:
    j = load("cpu-loader-1thread.json")
    by = {(r["mode"], r["workers"]): r for r in j["results"]}
    rows = [[w, num(by["decode", w]["images_per_s"]), num(by["cache", w]["images_per_s"], 0),
             f"**{num(by['cache/decode', w]['ratio'], 0)}x**"] for w in sorted({k[1] for k in by})]
    c = j["config"]
    return (table(["workers", "decode PNG (images/s)", "cache (images/s)", "cache / decode"], rows) + "\n\n" +
            caption(f"{rsna_raw(c)}, {c['size']} px, {c.get('resize_mode', c.get('fit'))}, batch {c['batch_size']}, median of {c['repeats']} "
                    "passes", j["machine"], "cpu-loader-1thread.json", j["command"]))



def cpu_train_steps() -> str:
    j = load("cpu-train-steps.json")
    names = {"fp32": "fp32", "amp": "AMP (bf16)", "amp_cl": "AMP + channels_last",
             "amp_cl_compile": "AMP + channels_last + compile"}
    res = j["steps"]["results"]
    fp32 = next(r for r in res if r["variant"] == "fp32")["images_per_s"]
    rows = [[names[r["variant"]], num(r["images_per_s"]), f"{r['images_per_s'] / fp32:.2f}",
             f"{num(r['peak_rss_growth_mb'], 0)} MB",
             f"{num(r['warmup_seconds'])} s" + (" (compilation)" if "compile" in r["variant"] else "")] for r in res]
    c = j["config"]
    return (table(["variant", "images/s", "vs fp32", "peak RSS growth", "warm-up"], rows) + "\n\n" +
            caption(f"one random uint8 batch of {c['batch_sizes']} at {c['image_size']} px, {c['backbone']}, "
                    f"{c['warmup']} warm-up and {c['repeats']} x {c['steps']} timed steps", j["machine"],
                    "cpu-train-steps.json", j["command"]))


def _pipeline(path: str) -> str:
    j = load(path)
    p = j["pipeline"]
    by = {r["pipeline"]: r for r in p["results"]}
    o, f = by["original"], by["fast"]
    amp = ({"bfloat16": "AMP (bf16)", "float16": "AMP (fp16)", "float32": "fp32 (`--amp auto` without native bf16)"}[f["dtype"]]
           if "dtype" in f else "AMP (bf16)" if f["amp"] in ("bf16", "auto") else f"AMP ({f['amp']})")
    aug = "on the GPU" if j["config"]["device"] == "cuda" else "on the device"
    where = f"in {o['workers']} workers" if o["workers"] else "in the training process"
    rows = [[f"original-style: fp32, each PNG decoded every epoch, torchvision augmentation {where}, no cache",
             num(o["images_per_s"])],
            [f"fast: cache, augmentation {aug}, {amp}" + (", channels_last" if f["channels_last"] else "") +
             (", compile" if f["compile"] else ""),
             num(f["images_per_s"])],
            ["fast / original", f"**{p['fast_vs_original']:.1f}x**"]]
    c = j["config"]
    data = p["data"].split(" repeated")[0]
    data = (f"{'raw RSNA training radiographs' if 'rsna-samples/raw' in data else 'synthetic radiographs'} repeated "
            f"to {o['limit']} items per epoch, {p['backbone']} at {p['image_size']} px, batch {o['batch_size']}, "
            f"{c['epochs']} epochs, median of epochs 2-{c['epochs']}")
    return table(["pipeline", "images/s"], rows) + "\n\n" + caption(data, j["machine"], path, j["command"])


def cpu_train_pipeline() -> str: return _pipeline("cpu-train-pipeline.json")
def h100_pipeline() -> str: return _pipeline("h100-pipeline-rsna.json")


def _times(ratio: float) -> str:
    "A speed-up: one decimal below 100, none above."
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def _workers(config: dict) -> str:
    "How many decoding processes the benchmark's Predictor used, from its description."
    m = re.search(r"\b(?:num_)?workers=(\d+)", config.get("predictor", ""))  # Predictor's repr, older: num_workers
    if m and m.group(1) == "0": return "the calling process"
    return f"{m.group(1)} worker process{'es' if m.group(1) != '1' else ''}" if m else "worker processes"


def _predict(path: str) -> str:
    j = load(path)
    r, c = j["results"], j["config"]
    bare = r["bare"]["images_per_s"]
    rows = [["bare `model(x, male)` loop over preprocessed uint8 batches", num(bare)],
            ["`Predictor.predict_images` on the same batches",
             f"{num(r['predict_images']['images_per_s'])} (**{j['ratios']['predict_images_vs_bare']:.3g}x** of bare)"],
            [f"`Predictor.predict(paths)`, files decoded in {_workers(c)}", num(r["predict_files"]["images_per_s"])],
            ["original way: checkpoint reloaded for every image",
             f"{num(r['original']['images_per_s'], 2)} (`predict` is {_times(j['ratios']['predict_files_vs_original'])} "
             "faster)"],
            [f"`bonexage-predict` on the {r['cli']['images']} files, including interpreter start and model load",
             f"{num(r['cli']['images_per_s_including_startup'])} ({num(r['cli']['seconds'])} s in all), peak RSS "
             f"{num(r['cli']['peak_rss_mb'], 0)} MB"]]
    data = (f"{rsna_raw(c)}; untrained {c['backbone']} at {c['image_size']} px, batch {c['batch_size']}, "
            f"{c['dtype']}; medians of {c['repeats']} interleaved rounds")
    return table(["measurement", "images/s"], rows) + "\n\n" + caption(data, j["machine"], path, j["command"])


def cpu_predict() -> str: return _predict("cpu-predict.json")
def h100_predict() -> str: return _predict("h100-predict.json")


def h100_train_steps() -> str:
    j, jc = load("h100-train-steps.json"), load("h100-train-steps-compile.json")
    # The first session's FLOP count included the counter's overcounted depthwise backward; the compile session's
    # count (3 x forward) is the corrected one for the same model and size, so MFU is recomputed from it.
    flops, peak = jc["steps"]["results"][0]["flops_per_image"], jc["steps"]["peak_bf16_tflops"]
    by = {(r["variant"], r["batch_size"]): r for r in j["steps"]["results"]}
    names = {"fp32": "fp32", "amp": "AMP (bf16)", "amp_cl": "AMP + channels_last"}
    def cells(r, fp32=None):
        if r is None: return ["-", "-", "-"]
        speed = f" ({r['images_per_s'] / fp32:.1f}x)" if fp32 and r["variant"] != "fp32" else ""
        return [num(r["images_per_s"]) + speed, f"{r['peak_memory_mb'] / 1000:.1f} GB",
                f"{r['images_per_s'] * flops / 1e12 / peak:.1%}"]
    rows = [[names[v]] + cells(by.get((v, 32)), by["fp32", 32]["images_per_s"]) +
            cells(by.get((v, 64)), by["fp32", 64]["images_per_s"]) for v in names]
    comp = {r["variant"]: r for r in jc["steps"]["results"]}
    rows.append(["AMP + channels_last + `torch.compile`", "-", "-", "-"] + cells(comp["amp_cl_compile"]))
    ratio = comp["amp_cl_compile"]["images_per_s"] / comp["amp_cl"]["images_per_s"]
    return (table(["variant", "batch 32: images/s", "peak memory", "MFU", "batch 64: images/s", "peak memory", "MFU"],
                  rows) + "\n\n" +
            f"*Compile against eager AMP + channels_last in the same process: {num(comp['amp_cl_compile']['images_per_s'])}"
            f" against {num(comp['amp_cl']['images_per_s'])} images/s, {ratio:.2f}x, after "
            f"{num(comp['amp_cl_compile']['warmup_seconds'], 0)} s of compilation. MFU: {flops / 1e9:.1f} GFLOP per image "
            f"(3 x forward) over {peak} TFLOP/s ({jc['steps']['peak_source']}).*\n\n" +
            f"*Data: one random uint8 batch, ConvNeXt-Tiny at 512 px, 5 warm-up and 3 x 20 timed steps. Machine: "
            f"{machine(j['machine'])}, {when(j['machine'])} (two sessions). Sources: {link('h100-train-steps.json')}, "
            f"{command(j['command'])}; {link('h100-train-steps-compile.json')}, {command(jc['command'])}.*")


def targets() -> str:
    loader, cpipe, hpipe = load("cpu-loader-1thread.json"), load("cpu-train-pipeline.json"), load("h100-pipeline-rsna.json")
    hstep, cpred, hpred = load("h100-train-steps-compile.json"), load("cpu-predict.json"), load("h100-predict.json")
    ratios = {r["workers"]: r["ratio"] for r in loader["results"] if r["mode"] == "cache/decode"}
    worst = min(ratios.values())
    comp = {r["variant"]: r["images_per_s"] for r in hstep["steps"]["results"]}
    hp = {r["pipeline"]: r["images_per_s"] for r in hpipe["pipeline"]["results"]}
    met = lambda ok, where: f"**{'met' if ok else 'not met'}** on {where}"
    rows = [[f"cache at least {CACHE_TARGET:.0f}x faster than decoding (loader, 512 px, raw RSNA radiographs)",
             met(worst >= CACHE_TARGET, machine(loader["machine"])),
             ", ".join(f"{num(r, 0)}x with {w} workers" for w, r in sorted(ratios.items())) + f" ({link('cpu-loader-1thread.json')})"],
            [f"training pipeline at least {PIPELINE_TARGET:.0f}x the original-style one on a GPU (ConvNeXt-Tiny, 512 px)",
             met(hpipe["pipeline"]["fast_vs_original"] >= PIPELINE_TARGET, machine(hpipe["machine"])),
             f"{hpipe['pipeline']['fast_vs_original']:.1f}x on raw RSNA radiographs ({num(hp['original'])} against "
             f"{num(hp['fast'])} images/s, {link('h100-pipeline-rsna.json')}); on the CPU, "
             f"{cpipe['config']['backbone']} at {cpipe['config']['image_size']} px: "
             f"{cpipe['pipeline']['fast_vs_original']:.1f}x ({link('cpu-train-pipeline.json')})"],
            [f"at least {STEP_TARGET:,.0f} training images/s at 512 px on an H100",
             met(comp["amp_cl_compile"] >= STEP_TARGET, machine(hstep["machine"])),
             f"{num(comp['amp_cl_compile'], 0)} with `torch.compile`, {num(comp['amp_cl'], 0)} without (bf16, "
             f"channels_last, batch 64; {link('h100-train-steps-compile.json')})"],
            [f"`Predictor` at least {PREDICTOR_TARGET}x of a bare `model(x)` loop on the same preprocessed batches",
             f"{met(cpred['ratios']['predict_images_vs_bare'] >= PREDICTOR_TARGET, machine(cpred['machine']))} and "
             f"{met(hpred['ratios']['predict_images_vs_bare'] >= PREDICTOR_TARGET, machine(hpred['machine'])).split(' on ', 1)[1]}",
             f"{cpred['ratios']['predict_images_vs_bare']:.2f}x on the CPU ({link('cpu-predict.json')}), "
             f"{hpred['ratios']['predict_images_vs_bare']:.3f}x on the GPU ({link('h100-predict.json')})"]]
    return table(["target", "status", "figures"], rows)


# ------------------------------------------------------------------------------------------------------- CPU speed
CPU_SPEED = "cpu-speed.json"


def _cpu_speed():
    "The cpu_speed.py result, or None when it has not been run."
    return load(CPU_SPEED) if (RESULTS / CPU_SPEED).exists() else None


def _not_yet() -> str:
    return (f"*No results yet: `python benchmarks/cpu_speed.py --checkpoint checkpoints/demo/best.pth` (after `make demo`) "
            f"writes `benchmarks/results/{CPU_SPEED}`; this table is generated from it.*")


def _smoke(j: dict) -> str:
    return " **Smoke test (`--quick`): tiny sizes, measures nothing.**" if j.get("smoke") else ""


def _passes(n: int) -> str:
    return f"{n} pass" + ("es" if n != 1 else "")


def _weights(w: str) -> str:
    "Trained or untrained, in a word."
    return "trained" if w.startswith("trained") else "untrained"


def _mode(m: dict, native: bool) -> str:
    "A precision mode of cpu_speed.py in words."
    if m["mode"] == "fp32": return "fp32 (`--amp off`)"
    if m["mode"] == "onnxruntime": return "onnxruntime, fp32 (ONNX export)"
    cl = " + channels_last" if m.get("channels_last") else ""
    return f"bf16 autocast{cl}" + (" (what `--amp auto` picks here)" if native else
                                   " (emulated: no native bf16 here, `--amp auto` keeps fp32)")


def cpu_speed() -> str:
    "fp32 against bf16 autocast against onnxruntime on the CPU: images/s and differences from fp32 in months."
    j = _cpu_speed()
    if j is None: return _not_yet()
    rows = []
    for p in j["precision"]:
        model = f"{BACKBONE_NAMES.get(p['model'], p['model'])}, {p['image_size']} px, {_weights(p['weights'])}"
        for m in p["modes"]:
            same = m["mode"] == "fp32"
            rows.append([model, _mode(m, j["native_bf16"]), num(m["images_per_s"], 2),
                         "1.00" if same else f"{m['speedup_vs_fp32']:.2f}x",
                         "-" if same else f"{m['mean_abs_diff_months']:.3f}",
                         "-" if same else f"{m['max_abs_diff_months']:.3f}"])
        for mode, key in (("bf16 autocast", "bf16_skipped"), ("onnxruntime", "onnxruntime_skipped")):
            if key in p: rows.append([model, f"{mode}: not measured ({p[key]})", "-", "-", "-", "-"])
    p0 = j["precision"][0]
    data = (f"{p0['source']}, {p0['images']} images per pass, batch {p0['batch_size']}, {p0['threads']} thread"
            f"{'s' if p0['threads'] != 1 else ''} (torch and onnxruntime); images/s: median of {_passes(p0['repeats'])}, "
            "the modes interleaved; differences: the same images against fp32")
    return (table(["model", "precision", "images/s", "vs fp32", "mean abs diff (months)", "max abs diff (months)"], rows)
            + "\n\n" + caption(data, j["machine"], CPU_SPEED, j["command"])[:-1] + _smoke(j) + "*")


def threads_under_load() -> str:
    "Prediction and training images/s of the demo model with 1 and 2 threads, idle and beside a CPU-bound process."
    j = _cpu_speed()
    if j is None or "threads_under_load" not in j: return _not_yet()
    t = j["threads_under_load"]
    rows = [[r["threads"], "yes" if r["concurrent_load"] else "no", num(r["predict_images_per_s"]),
             num(r["train_images_per_s"])] for r in t["rows"]]
    data = (f"{BACKBONE_NAMES.get(t['model'], t['model'])} at {t['image_size']} px ({_weights(t['weights'])}), "
            f"{t['dtype'].replace('bfloat16', 'bf16').replace('float32', 'fp32')} (`--amp auto`); prediction: "
            f"{t['images']} images ({t['source']}) in batches of {t['predict_batch_size']}; training: the production step "
            f"on batches of {t['train_batch_size']}, {t['train_steps']} steps per pass; medians of {_passes(t['repeats'])}. "
            f"Load: {t['load']}")
    m = {k: v for k, v in j["machine"].items() if k != "torch_threads"}  # the threads vary here: they are the rows
    return (table(["torch threads", "concurrent load", "prediction (images/s)", "training (images/s)"], rows) + "\n\n" +
            caption(data, m, CPU_SPEED, j["command"])[:-1] + _smoke(j) + "*")


# ------------------------------------------------------------------------------------------------------ RSNA 100x100
def rsna_json(name: str) -> dict:
    return load(f"rsna100/{name}.json")


def flags(cmd: str) -> dict:
    "The --key value options of a recorded bonexage-train command."
    words, out = shlex.split(cmd), {}
    for i, w in enumerate(words):
        if not w.startswith("--"): continue
        nxt = words[i + 1] if i + 1 < len(words) else None
        out[w[2:].replace("-", "_")] = nxt if nxt is not None and not nxt.startswith("--") else True
    return out


def _presets() -> tuple:
    "PRESETS and VARIANTS of benchmarks/rsna100.py (imported without running it)."
    import importlib.util
    spec = importlib.util.spec_from_file_location("_rsna100", ROOT / "benchmarks" / "rsna100.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod.PRESETS, mod.VARIANTS


def model_text(r: dict) -> str:
    "What was trained, from the recorded command: backbone, head design, size, epochs."
    f = flags(r["train_command"])
    parts = [BACKBONE_NAMES.get(f.get("backbone"), f.get("backbone")),
             "average pooling" if f.get("pool") == "avg" else "GeM"]
    if not f.get("no_use_sex"): parts.append("sex")
    parts.append("linear output" if f.get("output") == "linear" else "240 x sigmoid")
    planned = r.get("epochs_planned", f.get("epochs"))
    extra = "".join([f", augmentation x{f['aug_strength']}" if float(f.get("aug_strength", 1)) != 1 else "",
                     f", EMA {f['ema']}" if float(f.get("ema", 0)) else ""])
    return (" + ".join(parts) + f", {f.get('image_size')} px, {planned} epoch{'' if str(planned) == '1' else 's'}"
            + extra)


def rerun(r: dict) -> str:
    "The benchmarks/rsna100.py command that repeats a run with today's presets."
    presets, variants = _presets()
    f = flags(r["train_command"])
    cmd = f"python benchmarks/rsna100.py --preset {r['preset']}"
    for key, value in presets.get(r["preset"], {}).items():
        got = f.get(key)
        if got is not None and str(got) != str(value): cmd += f" --set {key}={got}"
    if r.get("variant", "full") != "full": cmd += f" --variant {r['variant']}"
    if r.get("seed", 0) != 0: cmd += f" --seed {r['seed']}"
    return f"`{cmd}`"


def minutes(r: dict) -> str:
    if r.get("completed") is False:
        return f"**incomplete**: stopped at epoch {r['epochs_done']} of {r['epochs_planned']} ({r['train_seconds']:.0f} s)"
    return f"{r['train_seconds'] / 60:.1f} min"


def rsna100_results() -> str:
    b = rsna_json("baselines")
    data = f"{RSNA100_DATA}, valid n = {b['n_valid']:,}"
    rows = [["baseline", "predict the training mean", data, "any", "-", f"{b['mean_mae']:.2f}", "-", "-",
             "`python benchmarks/rsna100.py --baselines`"],
            ["baseline", f"ridge regression on {b['ridge_features']}", data, "any CPU", "seconds",
             f"{b['ridge_mae']:.2f}", "-", "-", "`python benchmarks/rsna100.py --baselines`"]]
    for name in ["cpu-full-seed0", "ablation-full-seed0", "search_cpu_128px", "gpu-full-seed0-partial"]:
        if not (RSNA100 / f"{name}.json").exists(): continue
        r = rsna_json(name)
        target = PRESET_TARGETS[r["preset"]]
        if r.get("valid_mae") is not None:
            mae, rmse = f"**{r['valid_mae']:.2f}**", f"{r['valid_rmse']:.2f}"
            status = f"<= {target:g}: {'met' if r['valid_mae'] <= target else 'missed'}"
        else:  # cut short: the training loop's own validation at the last epoch, no final evaluation
            mae = f"{r['last_epoch_valid_mae']:.2f} at epoch {r['epochs_done']} (no final evaluation)"
            rmse, status = f"{r['last_epoch_valid_rmse']:.2f}", f"<= {target:g}: not reached, run incomplete"
        label = f"`{r['preset']}` preset" + (" (the first cpu recipe)" if r["preset"] == "ablation" else "")
        rows.append([label, model_text(r), data, machine(r["machine"]), minutes(r), mae, rmse,
                     status, rerun(r)])
    return table(["row", "model", "data", "machine", "training time", "valid MAE (months)", "RMSE", "target",
                  "command"], rows)


def _rises(log) -> tuple:
    maes = [e["valid_mae"] for e in log]
    rises = [b - a for a, b in zip(maes, maes[1:]) if b > a]
    return len(rises), max(rises, default=0.0)


def rsna100_ablation() -> str:
    boot = {(c["preset"], c["variant"], c["seed"]): c for c in rsna_json("ablation_bootstrap")}
    order = ["full", "avgpool", "nosex", "linear", "stretch"]
    label = {"full": "full design: GeM, sex input, 240 x sigmoid, padding", "avgpool": "(a) average pooling instead of GeM",
             "nosex": "(b) no sex input", "linear": "(c) plain linear output instead of 240 x sigmoid",
             "stretch": "(d) stretching instead of padding"}
    runs = sorted((json.loads(p.read_text()) for p in RSNA100.glob("ablation-*-seed*.json")),
                  key=lambda r: (r["seed"], order.index(r["variant"])))
    rows, machines = [], set()
    for r in runs:
        c = boot.get((r["preset"], r["variant"], r["seed"]))
        vs = "-" if r["variant"] == "full" else (
            f"{c['delta_mae']:+.2f} ({c['ci95'][0]:+.2f} to {c['ci95'][1]:+.2f})" if c else "not computed")
        n, largest = _rises(r["log"])
        machines.add(machine(r["machine"]))
        rows.append([label[r["variant"]], r["seed"], f"{r['valid_mae']:.2f}", vs, f"{r['valid_rmse']:.2f}",
                     f"{r['metrics']['bias']:+.2f}", "yes" if r["diverged"] else "no", f"{n} ({largest:.1f})",
                     f"{r['train_seconds'] / 60:.1f}", rerun(r)])
    n_valid = runs[0]["metrics"]["n"]
    return (table(["variant", "seed", "valid MAE", "vs full (95% interval)", "RMSE", "bias", "diverged",
                   "valid MAE rises (largest)", "minutes", "command"], rows) + "\n\n" +
            f"*Data: {RSNA100_DATA}, valid n = {n_valid:,}; `ablation` preset ({model_text(runs[0]).split(', ', 1)[1]}). "
            f"Machine: {'; '.join(sorted(machines))}. The interval is a paired bootstrap over the validation images "
            "(`ablation_bootstrap.json`), not a spread over seeds. Source: `benchmarks/results/rsna100/ablation-*-seed*.json`.*")


def rsna100_search() -> str:
    "The recipe search's measured steps (the runs that left a results file)."
    steps = [("ablation-full-seed0", "the first `cpu` recipe (now the `ablation` preset)"),
             ("search_cpu_128px", "the same at 128 px (1.8x the pixels)"), ("gpu-full-seed0-partial", "the `gpu` preset")]
    # then the tagged attempts (rsna100.py --tag), in the order they ran, and the `cpu` preset they led to
    tagged = sorted((r.get("started", ""), p.stem, r.get("note") or r["tag"])
                    for p in RSNA100.glob("search_*.json") if "tag" in (r := json.loads(p.read_text())))
    steps += [(name, note) for _, name, note in tagged]
    if (RSNA100 / "cpu-full-seed0.json").exists(): steps.append(("cpu-full-seed0", "the `cpu` preset"))
    rows = []
    for name, what in steps:
        r = rsna_json(name)
        if r.get("diverged") and not r.get("log"):
            rows.append([what, "failed to train", minutes(r), "-", "-", machine(r["machine"]), f"`{name}.json`"]); continue
        last = [f"{e['valid_mae']:.2f}" for e in r["log"][-3:]]
        speed = sorted(e["images_per_s"] for e in r["log"][1:])
        mae = (f"**{r['valid_mae']:.2f}** (RMSE {r['valid_rmse']:.2f})" if r.get("valid_mae") is not None else
               f"{r['last_epoch_valid_mae']:.2f} at epoch {r['epochs_done']} (best {r['best_valid_mae']:.2f} at epoch "
               f"{r['best_epoch']}); no final evaluation")
        rows.append([f"{what}: {model_text(r)}", mae, minutes(r), ", ".join(last),
                     f"{num(speed[len(speed) // 2], 0)}", machine(r["machine"]), f"`{name}.json`"])
    return (table(["run", "valid MAE", "training time", "valid MAE, last 3 epochs", "images/s (median)", "machine",
                   "result"], rows) + "\n\n" + f"*Data: {RSNA100_DATA}, valid n = 1,113. Source: "
            "`benchmarks/results/rsna100/`.*")


def rsna100_cv() -> str:
    "The cross-validated fold ensemble with its bias correction, or a note that it has not been run."
    files = sorted(RSNA100.glob("cv-*.json"))
    if not files:
        return ("*No results yet: the `cv` preset has not been run. `python benchmarks/rsna100.py --preset cv` trains "
                "it and writes `benchmarks/results/rsna100/cv-full-seed0.json`; this table is generated from it.*")
    rows = []
    for p in files:
        r = json.loads(p.read_text())
        if r.get("smoke"): continue
        e = r["ensemble"]
        rows.append([f"{r['folds']} folds: {model_text(r)}", f"{r['cv']['pooled_oof_mae']:.2f}",
                     f"{e['raw']['mae']:.2f}", f"{e['corrected']['mae']:.2f}",
                     f"{e['raw']['bias']:+.2f} / {e['corrected']['bias']:+.2f}",
                     f"{e['interval_coverage']:.1%} ({e['coverage_target']:.0%} asked), mean width "
                     f"{e['mean_interval_width']:.0f} months" if "interval_coverage" in e else "no intervals",
                     f"{r['train_seconds'] / 60:.1f} min", machine(r["machine"]),
                     f"<= {PRESET_TARGETS['cv']:g}: {'met' if e['corrected']['mae'] <= PRESET_TARGETS['cv'] else 'missed'}",
                     f"`{p.name}`"])
    if not rows:
        return "*No results yet: only smoke runs of the `cv` preset exist (`--quick`); they measure nothing.*"
    return (table(["ensemble", "pooled OOF MAE", "valid MAE, raw", "valid MAE, bias-corrected", "bias raw / corrected",
                   "interval coverage", "training time", "machine", "target (corrected)", "result"], rows) + "\n\n" +
            f"*Data: {RSNA100_DATA}; folds drawn from the training part, ensemble evaluated on the fixed validation "
            "part. Source: `benchmarks/results/rsna100/cv-*.json`.*")


# ------------------------------------------------------------------------------------------------------- README.md
def speed_summary() -> str:
    st, comp = load("h100-train-steps.json"), load("h100-train-steps-compile.json")
    pipe, pred, loader = load("h100-pipeline-rsna.json"), load("h100-predict.json"), load("cpu-loader-1thread.json")
    s = {(r["variant"], r["batch_size"]): r["images_per_s"] for r in st["steps"]["results"]}
    c = {r["variant"]: r["images_per_s"] for r in comp["steps"]["results"]}
    p = {r["pipeline"]: r["images_per_s"] for r in pipe["pipeline"]["results"]}
    lr = {(r["mode"], r["workers"]): r for r in loader["results"]}
    rows = [["training step, ConvNeXt-Tiny 512 px, batch 64",
             f"{num(s['fp32', 64], 0)} (fp32), {num(s['amp_cl', 64], 0)} (bf16 + channels_last), "
             f"{num(c['amp_cl_compile'], 0)} (+ `torch.compile`) images/s", "random batches",
             machine(st["machine"]), command(st["command"])],
            ["training pipeline, fast / original-style", f"{num(p['fast'], 0)} / {num(p['original'])} images/s = "
             f"{pipe['pipeline']['fast_vs_original']:.1f}x", rsna_raw(pipe["config"]) + ", 512 px",
             machine(pipe["machine"]), command(pipe["command"])],
            ["`Predictor` / bare model loop, ConvNeXt-Tiny 512 px",
             f"{num(pred['results']['predict_images']['images_per_s'], 0)} / {num(pred['results']['bare']['images_per_s'], 0)}"
             f" images/s = {pred['ratios']['predict_images_vs_bare']:.3f}x", rsna_raw(pred["config"]),
             machine(pred["machine"]), command(pred["command"])],
            ["preprocessing cache / decoding PNGs, 512 px, 0 workers",
             f"{num(lr['cache', 0]['images_per_s'], 0)} / {num(lr['decode', 0]['images_per_s'])} images/s = "
             f"{num(lr['cache/decode', 0]['ratio'], 0)}x", rsna_raw(loader["config"]), machine(loader["machine"]),
             command(loader["command"])]]
    return table(["measurement", "figure", "data", "machine", "command"], rows)


TABLES = {
    "targets": targets, "cpu-loader": cpu_loader, "cpu-train-steps": cpu_train_steps,
    "cpu-train-pipeline": cpu_train_pipeline, "cpu-predict": cpu_predict, "h100-train-steps": h100_train_steps,
    "h100-pipeline": h100_pipeline, "h100-predict": h100_predict,
    "rsna100-results": rsna100_results, "rsna100-ablation": rsna100_ablation, "rsna100-search": rsna100_search,
    "rsna100-cv": rsna100_cv, "speed-summary": speed_summary,
    "cpu-speed": cpu_speed, "threads-under-load": threads_under_load,
}


def results_table(name: str) -> str:
    "The markdown table `name`, generated from the JSON results."
    if name not in TABLES: raise KeyError(f"no table named {name!r}; the tables are: {', '.join(TABLES)}")
    return TABLES[name]()


# ------------------------------------------------------------------------------------------------ markers in files
def fill(text: str, where: str) -> str:
    "`text` with every marked table regenerated; ValueError for an unknown name or an unclosed marker."
    stack = []
    for m in OPENING.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if name not in TABLES: raise ValueError(f"{where}: unknown table {name!r} (known: {', '.join(TABLES)})")
        if not closing: stack.append(name)
        elif not stack or stack.pop() != name: raise ValueError(f"{where}: <!-- /table:{name} --> without its opening")
    if stack: raise ValueError(f"{where}: <!-- table:{stack[-1]} --> is never closed")
    return MARKER.sub(lambda m: f"<!-- table:{m.group(1)} -->\n{results_table(m.group(1))}\n<!-- /table:{m.group(1)} -->",
                      text)


def process(path: Path) -> tuple:
    "(old text, new text, names of the tables found) of a markdown file or a notebook."
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return text, fill(text, str(path)), MARKER.findall(text)
    nb, names = json.loads(text), []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown": continue
        src = "".join(cell["source"])
        if "<!-- " not in src: continue
        new = fill(src, f"{path} cell {i}")
        names += [n for n, _ in MARKER.findall(src)]
        cell["source"] = new.splitlines(keepends=True)
    return text, json.dumps(nb, indent=1, ensure_ascii=False) + "\n", [(n, "") for n in names]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="print this table")
    p.add_argument("--list", action="store_true", help="list the table names")
    p.add_argument("--write", nargs="*", metavar="FILE", help="regenerate the marked tables in FILES")
    p.add_argument("--check", nargs="*", metavar="FILE", help="exit 1 if a marked table in FILES is out of date")
    p.add_argument("--results", metavar="DIR", default=None, help="read the JSON files from DIR instead of "
                   "benchmarks/results/ (DIR/rsna100/ for the RSNA 100x100 tables), e.g. to look at a smoke test")
    args = p.parse_args(argv)
    if args.results:
        global RESULTS, RSNA100
        RESULTS = Path(args.results).resolve(); RSNA100 = RESULTS / "rsna100"
    if args.list: print("\n".join(TABLES)); return 0
    if args.name:
        if args.name not in TABLES: print(f"tables.py: no table {args.name!r}; try --list", file=sys.stderr); return 2
        print(results_table(args.name)); return 0
    if args.write is None and args.check is None: p.print_usage(sys.stderr); return 2
    files = (args.write if args.write is not None else args.check) or DEFAULT_FILES
    stale = 0
    for f in files:
        path = Path(f) if Path(f).is_absolute() else ROOT / f
        if not path.exists(): print(f"tables.py: {f}: no such file", file=sys.stderr); return 2
        try: old, new, found = process(path)
        except ValueError as e: print(f"tables.py: {e}", file=sys.stderr); return 2
        if old == new: continue
        if args.write is not None:
            path.write_text(new, encoding="utf-8"); print(f"{f}: updated ({len(found)} tables)")
        else:
            stale += 1; print(f"{f}: tables out of date with benchmarks/results/: run python benchmarks/tables.py --write")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
