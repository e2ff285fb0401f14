"""Shared helpers of the BoneXage benchmarks: import setup, machine description, medians, JSON output.

The benchmarks run from a plain checkout (no `pip install -e .` needed): the repository root goes on `sys.path`.
On a machine without pydicom (a bare GPU machine has torch, torchvision, numpy, pandas, pillow, tqdm and matplotlib,
but not pydicom), `bonexage.io` cannot be imported, because it imports pydicom at module level. The benchmarks read
PNG files only, so `use_pydicom_stub()` installs a stand-in module whose every attribute raises ImportError when
used: PNG reading works, DICOM reading fails loudly. It is a benchmark-only workaround, never used by the package.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, sys, time, types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))


def use_pydicom_stub()->bool:
    "Make `import bonexage` work without pydicom (PNG-only benchmarks); True when the stand-in was installed."
    try:
        import pydicom  # noqa: F401
        return False
    except ImportError: pass
    def missing(name):
        if name.startswith("__"): raise AttributeError(name)  # module machinery (inspect, pickle) probes dunder names
        def fail(*args, **kwargs): raise ImportError("pydicom is not installed: DICOM files cannot be read here")
        return fail
    for name in ("pydicom", "pydicom.pixels", "pydicom.uid"):
        mod = types.ModuleType(name)
        mod.__getattr__ = missing  # PEP 562: `from pydicom.pixels import x` gets a function that raises when called
        mod.dcmread = missing("dcmread")
        sys.modules[name] = mod
    sys.modules["pydicom"].pixels, sys.modules["pydicom"].uid = sys.modules["pydicom.pixels"], sys.modules["pydicom.uid"]
    print("note: pydicom is not installed; using a stand-in (PNG files only)", file=sys.stderr)
    return True


def find_samples()->Path|None:
    "The raw RSNA samples: $BONEXAGE_SHARED_DATA/rsna-samples/raw, else shared/data/rsna-samples/raw above the repo or cwd."
    if env := os.environ.get("BONEXAGE_SHARED_DATA"):
        candidates = [Path(env)/"rsna-samples"/"raw"]
    else:
        candidates = [p/"shared"/"data"/"rsna-samples"/"raw" for p in [ROOT, *ROOT.parents, Path.cwd(), *Path.cwd().parents]]
    return next((c for c in candidates if c.is_dir()), None)


def cpu_model()->str:
    "The processor's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"): return line.split(":", 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def machine_info()->dict:
    "Where and with what a benchmark ran: CPU, cores, load, GPU, library versions."
    import numpy, PIL, torch, torchvision
    info = dict(host=platform.node(), platform=platform.platform(), python=platform.python_version(),
                cpu=cpu_model(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, torchvision=torchvision.__version__, numpy=numpy.__version__,
                pillow=PIL.__version__, gpu=None, cuda=torch.version.cuda,
                time=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    if hasattr(os, "getloadavg"): info["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available(): info["gpu"] = torch.cuda.get_device_name()
    return info


def median(values)->float:
    return float(statistics.median(values))


def max_rss_mb(who=resource.RUSAGE_SELF)->float:
    "Peak resident set size so far in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."
    rss = resource.getrusage(who).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def emit(result:dict, out:str|None):
    "Print the result as JSON on stdout and, with --out, write it to that file too."
    text = json.dumps(result, indent=2, default=str)
    print(text, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


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
