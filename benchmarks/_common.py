"""Shared helpers of the BoneXage benchmarks: import setup, the RSNA samples, machine description, medians, JSON output.

The benchmarks run from a plain checkout (no `pip install -e .` needed): the repository root goes on `sys.path`.
On a bare GPU machine (torch, torchvision, numpy, pandas, pillow, tqdm and matplotlib, but maybe not pydicom or
safetensors), `bonexage.io` and `bonexage.model` cannot be imported, because they import those packages at module
level. The benchmarks read PNG files and build their own models, so `use_stubs()` installs stand-in modules whose every
attribute raises ImportError when used: PNG reading works, DICOM reading and safetensors files fail loudly. It is a
benchmark-only workaround, never used by the package.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, sys, time, types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))


def _library_logs_to_stderr():
    "The package's INFO lines (stdout by default) go to stderr here: a benchmark's stdout holds only its JSON."
    import logging
    root = logging.getLogger("bonexage")
    if not root.handlers:  # bonexage.core.get_logger then keeps this handler instead of adding its own
        handler = logging.StreamHandler(sys.stderr); handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler); root.setLevel(logging.INFO); root.propagate = False


_library_logs_to_stderr()

# optional packages the package imports at module level: {package: its submodules imported by bonexage}
_STUBBED = {"pydicom": ("pixels", "uid"), "safetensors": ("torch",)}


def _stub(package:str, submodules:tuple):
    "Install a stand-in for `package`: functions raise ImportError when called, names ending in Error are exceptions."
    def missing(name):
        if name.startswith("__"): raise AttributeError(name)  # module machinery (inspect, pickle) probes dunder names
        if name.endswith("Error"): return type(name, (Exception,), {})  # `except SafetensorError:` must stay valid
        def fail(*args, **kwargs): raise ImportError(f"{package} is not installed: {name} cannot be used here")
        return fail
    top = types.ModuleType(package); top.__getattr__ = missing  # PEP 562: `from pkg import x` gets a stand-in
    sys.modules[package] = top
    for sub in submodules:
        mod = types.ModuleType(f"{package}.{sub}"); mod.__getattr__ = missing
        sys.modules[f"{package}.{sub}"] = mod; setattr(top, sub, mod)


def use_stubs()->list:
    "Make `import bonexage` work without pydicom or safetensors (PNG-only benchmarks); the packages stood in for."
    stubbed = []
    for package, submodules in _STUBBED.items():
        if package in sys.modules: continue
        try: __import__(package)
        except ImportError: _stub(package, submodules); stubbed.append(package)
    if stubbed: print(f"note: {', '.join(stubbed)} not installed; using stand-ins (PNG files only)", file=sys.stderr)
    return stubbed



def raw_samples()->Path|None:
    "The folder of raw RSNA sample PNGs (bonexage.io.find_rsna_samples()/raw: $BONEXAGE_SAMPLES or shared/data), or None."
    use_stubs()  # bonexage.io imports pydicom
    from bonexage.io import find_rsna_samples
    samples = find_rsna_samples()
    return samples/"raw" if samples is not None else None


def images_folder(images:str|None)->Path:
    "--images, else the raw RSNA samples; exit with one line when neither is there."
    folder = Path(images) if images else raw_samples()
    if folder is None: sys.exit("no --images given and the RSNA samples were not found (set BONEXAGE_SAMPLES)")
    if not folder.is_dir(): sys.exit(f"{folder}: no such folder")
    return folder


def machine_info(device=None)->dict:
    "Where and with what a benchmark ran: bonexage.core.machine_info plus host, date, load and more library versions."
    import numpy, PIL, torch, torchvision
    from bonexage.core import machine_info as core_machine_info
    info = dict(host=platform.node(), **core_machine_info(device), torchvision=torchvision.__version__,
                numpy=numpy.__version__, pillow=PIL.__version__, cuda=torch.version.cuda,
                time=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    if hasattr(os, "getloadavg"): info["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
    return info


def median(values)->float:
    "The median, as a float."
    return float(statistics.median(values))


def max_rss_mb(who=resource.RUSAGE_SELF)->float:
    "Peak resident set size so far in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."
    rss = resource.getrusage(who).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def add_output_option(p:argparse.ArgumentParser, default:str|None=None, what:str="also write the JSON result to this file"):
    "-o/--output FILE (alias --out, the option's earlier name)."
    p.add_argument("-o", "--output", "--out", dest="out", metavar="FILE", default=default, help=what)


def emit(result:dict, out:str|None):
    "Print the result as JSON on stdout and, with -o/--output, write it to that file too (atomically)."
    text = json.dumps(result, indent=2, default=str)
    print(text, flush=True)
    if out:
        from bonexage.core import write_text_atomic
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text + "\n")
        print(f"wrote {out}", file=sys.stderr)


def repeated_table(folder, items:int):
    "A table of `items` rows cycling through the images of `folder` (sorted), index labels = each image's row 0..n-1."
    import numpy as np, pandas as pd
    from bonexage.io import IMAGE_SUFFIXES
    paths = sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths: raise SystemExit(f"no images in {folder}")
    unique = pd.DataFrame(dict(id=[Path(p).stem for p in paths], bone_age_months=100.0, male=True, path=paths))
    rows = np.arange(items) % len(paths)
    return unique, unique.iloc[rows].copy()  # the repeated table keeps the unique table's labels: cache rows


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    "Show '(default: ...)' only for options that have a fixed default (others say theirs in their help)."
    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False else super()._get_help_string(action)
