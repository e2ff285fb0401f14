#!/usr/bin/env python
"""Prediction throughput: bonexage.predict.Predictor against a bare model loop and against the original per-image reload.

Side by side in one run, on one untrained checkpoint (throughput does not depend on the weights):

- `bare`: `model(image, male)` over the same preprocessed uint8 batches, with the predictor's own model, device and
  autocast setting, reading each batch's result back to the CPU (as any caller must);
- `predict_images`: `Predictor.predict_images` on those batches (target: at least 0.85x of `bare`);
- `predict_files`: `Predictor.predict(paths)`, decoding the image files in worker processes (end to end);
- `original`: the original predict.py's way, loading the checkpoint again for every image, then decoding it and
  predicting it alone;
- `cli`: the `bonexage-predict` command in a subprocess, with its wall time and peak memory (the largest resident set
  of the command and its decoding workers, from `resource.getrusage(RUSAGE_CHILDREN)` in a wrapper process).

    python benchmarks/predict.py --threads 1          # CPU: convnext_atto at 256 px on the RSNA samples
    python benchmarks/predict.py --device cuda        # GPU: convnext_tiny at 512 px
    python benchmarks/predict.py --quick
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

import _common

_CLI_WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter(); r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps(dict(returncode=r.returncode, seconds=time.perf_counter() - t0, stderr=r.stderr[-2000:],
                      lines=len(r.stdout.splitlines()), max_rss_kb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)))
"""
_CLI_MAIN = ("import sys; sys.path.insert(0, {bench!r}); import _common; _common.use_stubs(); "
             "from bonexage.predict import main; sys.exit(main(sys.argv[1:]))")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_common.HelpFormatter)
    p.add_argument("--images", default=None, help="folder of radiographs (default: the raw RSNA samples, "
                   "$BONEXAGE_SAMPLES/raw or shared/data/rsna-samples/raw found above the repository)")
    p.add_argument("--items", type=int, default=None, help="images predicted per pass: the folder's repeated "
                   "(default: 512 on a GPU, 56 on the CPU)")
    p.add_argument("--device", default="auto", help="'auto' (the GPU when there is one), 'cpu' or 'cuda'")
    p.add_argument("--backbone", default=None, help="backbone (default: convnext_tiny on a GPU, convnext_atto on the CPU)")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: 512 on a GPU, 256 on the CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: 64 on a GPU, 8 on the CPU)")
    p.add_argument("--workers", "--num-workers", type=int, default=None,
                   help="Predictor decoding processes (default: the Predictor's own)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds; each round runs every measurement once, in turn; "
                   "medians are reported")
    p.add_argument("--reload-items", type=int, default=None, help="images for the original reload-per-image way "
                   "(default: 8 on a GPU, 4 on the CPU)")
    p.add_argument("--skip-cli", action="store_true", help="do not run the bonexage-predict command")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's); also set for the command")
    _common.add_output_option(p)
    p.add_argument("--quick", action="store_true", help="smoke test: 64 px, 8 items, one pass")
    a = p.parse_args(argv)
    import torch
    a.device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    gpu = a.device.startswith("cuda")
    pick = lambda v, on_gpu, on_cpu: v if v is not None else (on_gpu if gpu else on_cpu)
    a.backbone, a.image_size = pick(a.backbone, "convnext_tiny", "convnext_atto"), pick(a.image_size, 512, 256)
    a.items, a.batch_size, a.reload_items = pick(a.items, 512, 56), pick(a.batch_size, 64, 8), pick(a.reload_items, 8, 4)
    if a.quick: a.image_size, a.items, a.batch_size, a.reload_items, a.repeats = 64, 8, 4, 2, 1
    return a


def interleaved(runs:dict, repeats:int, sync)->dict:
    "Images/s of each {name: (fn, n)} over `repeats` rounds that call every fn once in turn (same background load)."
    rates = {name: [] for name in runs}
    for name, (fn, n) in runs.items(): print(f"predict: warming up {name}", file=sys.stderr, flush=True); fn()
    for _ in range(repeats):
        for name, (fn, n) in runs.items():
            sync(); t0 = time.perf_counter(); fn(); sync(); rates[name].append(n / (time.perf_counter() - t0))
    return rates


def main(argv=None):
    a = parse_args(argv)
    _common.use_stubs()
    import numpy as np, torch
    from bonexage.core import autocast, set_threads
    from bonexage.io import load_prepared
    from bonexage.model import BoneAgeModel, ModelConfig, load_model, save_checkpoint
    from bonexage.predict import Predictor
    if a.threads: set_threads(a.threads)
    folder = _common.images_folder(a.images)
    unique, table = _common.repeated_table(folder, a.items)
    paths = table.path.tolist()
    device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    result = dict(benchmark="predict", machine=_common.machine_info(device), command=" ".join(sys.argv),
                  config=dict(images=str(folder), unique_images=len(unique), items=a.items, backbone=a.backbone,
                              image_size=a.image_size, batch_size=a.batch_size, device=a.device, repeats=a.repeats,
                              threads=a.threads), results={})
    with tempfile.TemporaryDirectory(prefix="bonexage-bench-") as scratch:
        ckpt = Path(scratch)/"model.pth"
        torch.manual_seed(0)
        save_checkpoint(ckpt, BoneAgeModel(ModelConfig(backbone=a.backbone, image_size=a.image_size)))
        predictor = Predictor.from_checkpoint(ckpt, device=a.device, batch_size=a.batch_size, workers=a.workers)
        model, dtype = predictor.models[0], predictor.dtype
        result["config"].update(predictor=repr(predictor), dtype=str(dtype).replace("torch.", "") if dtype else "float32")
        pixels = {p: load_prepared(p, a.image_size) for p in unique.path}
        images = torch.from_numpy(np.stack([pixels[p] for p in paths]))[:, None]
        male = torch.ones(len(paths))
        batches = [(images[i:i + a.batch_size], male[i:i + a.batch_size]) for i in range(0, len(paths), a.batch_size)]

        @torch.inference_mode()
        def bare():
            for x, m in batches:
                with autocast(device, dtype):
                    model(x.to(device, non_blocking=True), m.to(device, non_blocking=True)).float().cpu()

        def via_predictor():
            for x, m in batches: predictor.predict_images(x, m)

        def original():  # the original scripts: load the model for every image, then decode and predict it alone
            for p in paths[:a.reload_items]:
                m = load_model(ckpt, device)
                x = torch.from_numpy(load_prepared(p, m.config.image_size, m.config.resize_mode))[None, None].to(device)
                with torch.inference_mode(): m(x, torch.ones(1, device=device)).float().cpu()

        runs = dict(bare=(bare, len(paths)), predict_images=(via_predictor, len(paths)),
                    predict_files=(lambda: predictor.predict(paths, male=True), len(paths)),
                    original=(original, min(a.reload_items, len(paths))))
        for name, rates in interleaved(runs, a.repeats, sync).items():
            result["results"][name] = dict(images=runs[name][1], images_per_s=round(_common.median(rates), 2),
                                           runs=[round(r, 2) for r in rates])
        r = {k: v["images_per_s"] for k, v in result["results"].items()}
        result["ratios"] = dict(predict_images_vs_bare=round(r["predict_images"] / r["bare"], 3),
                                predict_files_vs_original=round(r["predict_files"] / r["original"], 1))
        result["target"] = dict(goal="Predictor.predict_images at least 0.85x of a bare model loop",
                                met=result["ratios"]["predict_images_vs_bare"] >= 0.85)
        if not a.skip_cli:
            listing = Path(scratch)/"images.txt"; listing.write_text("\n".join(paths) + "\n")
            cmd = [sys.executable, "-c", _CLI_MAIN.format(bench=str(Path(__file__).parent)), str(listing), "M", "--model",
                   str(ckpt), "--device", a.device, "--batch-size", str(a.batch_size), "--quiet"]
            if a.workers is not None: cmd += ["--workers", str(a.workers)]
            env = dict(os.environ, **({"OMP_NUM_THREADS": str(a.threads)} if a.threads else {}))
            out = subprocess.run([sys.executable, "-c", _CLI_WRAPPER, *cmd], capture_output=True, text=True, env=env)
            try: cli = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError): cli = dict(returncode=out.returncode, stderr=out.stderr[-2000:])
            kb = cli.pop("max_rss_kb", None)
            if kb: cli["peak_rss_mb"] = round(kb / (1024 if sys.platform != "darwin" else 1024 * 1024), 1)
            if cli.get("returncode") == 0:
                cli.pop("stderr", None); cli["images_per_s_including_startup"] = round(len(paths) / cli["seconds"], 2)
            cli["seconds"] = round(cli.get("seconds", float("nan")), 2)
            result["results"]["cli"] = dict(images=len(paths), command="bonexage-predict IMAGE_LIST M --model CKPT "
                                            f"--device {a.device} --batch-size {a.batch_size} --quiet", **cli)
    _common.emit(result, a.out)


if __name__ == "__main__": main()
