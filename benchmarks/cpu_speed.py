#!/usr/bin/env python
"""CPU prediction and training speed: fp32 against bf16 autocast against onnxruntime, and thread counts under load.

Everything is measured side by side in one process (or one process and its load generator), on the same images:

- precision: `Predictor` with `amp="off"` (fp32), `amp="auto"` (bf16 autocast + channels_last where the CPU computes
  bf16 natively) and an ONNX export of the same model run by onnxruntime; images/s (median of per-batch rates) and the
  largest and mean absolute difference from fp32, in months, over the same images; for ConvNeXt-Tiny at 512 px and
  the ResNet-18 of `bonexage-demo` at 128 px;
- threads under load: prediction and training steps of the demo model with 1 and 2 torch threads, on an idle machine
  and while a second process keeps one core busy (as another job on a shared machine would).

    python benchmarks/cpu_speed.py --demo-checkpoint checkpoints/demo/best.pth --out benchmarks/results/cpu-speed.json
    python benchmarks/cpu_speed.py --quick            # smoke test, seconds

Without `--demo-checkpoint` the ResNet-18 is untrained. The ConvNeXt-Tiny is always untrained here (no ImageNet
download, no GPU to train it): its head's last layer gets random weights so that its outputs spread over the age range
and the differences between precisions are not trivially zero. Differences measured on it are indicative only.
"""
from __future__ import annotations
import argparse, multiprocessing as mp, sys, tempfile, time
from pathlib import Path

import _common


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_common.HelpFormatter)
    p.add_argument("--images", default=None, help="folder of radiographs (default: the raw RSNA samples, else phantoms)")
    p.add_argument("--items", type=int, default=56, help="images per measurement (the folder's, repeated)")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    p.add_argument("--demo-checkpoint", default=None, help="a trained bonexage-demo checkpoint (ResNet-18, 128 px)")
    p.add_argument("--skip-convnext", action="store_true", help="skip ConvNeXt-Tiny at 512 px (the slow part)")
    p.add_argument("--skip-load", action="store_true", help="skip the thread counts under load")
    p.add_argument("--train-steps", type=int, default=8, help="timed training steps per thread/load setting")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, few items")
    a = p.parse_args(argv)
    if a.quick: a.items, a.train_steps = 8, 2
    return a


def _burn(stop):
    "A competing job: one thread of dense float work until told to stop."
    import torch
    torch.set_num_threads(1)
    x = torch.randn(384, 384)
    while not stop.is_set(): x = torch.tanh(x @ x * 1e-3)


class Load:
    "Context manager running `_burn` in another process: one core kept busy, as by another job."
    def __enter__(self):
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event(); self.proc = ctx.Process(target=_burn, args=(self.stop,), daemon=True)
        self.proc.start(); time.sleep(1.0)
        return self
    def __exit__(self, *exc):
        self.stop.set(); self.proc.join(10)
        if self.proc.is_alive(): self.proc.kill()


def images_for(a, size:int):
    "uint8 (N,1,S,S) tensor of the benchmark images at `size`, and where they came from."
    import numpy as np, torch
    from bonexage.io import load_prepared
    folder = Path(a.images) if a.images else _common.find_samples()
    if folder is not None:
        unique, table = _common.repeated_table(folder, a.items)
        cache = {p: load_prepared(p, size) for p in unique.path}
        x = np.stack([cache[p] for p in table.path]); source = f"{len(unique)} radiographs from {folder.name}, repeated"
    else:
        from bonexage.io import prepare, to_uint8
        from bonexage.synthetic import make_phantom
        ph = [make_phantom(24.0 + 4 * i, i % 2 == 0, size=max(size, 64), seed=i) for i in range(a.items)]
        x = np.stack([to_uint8(prepare(np.asarray(p, dtype=np.float32), size)) for p in ph]); source = "synthetic phantoms"
    return torch.from_numpy(x)[:, None], source


def per_batch_rate(fn, images, male, batch:int)->tuple:
    "Run fn over batches once; (median images/s over batches, concatenated predictions)."
    import numpy as np
    rates, outs = [], []
    fn(images[:batch], male[:batch])  # warm-up
    for i in range(0, len(images), batch):
        t0 = time.perf_counter(); out = fn(images[i:i + batch], male[i:i + batch])
        rates.append(len(out) / (time.perf_counter() - t0)); outs.append(out)
    return float(np.median(rates)), np.concatenate(outs)


def precision_section(a, name:str, model, size:int, scratch:Path)->dict:
    "fp32 / auto / onnxruntime images/s and differences in months for one model."
    import numpy as np, torch
    from bonexage.core import set_threads
    from bonexage.predict import Predictor
    set_threads(1)
    images, source = images_for(a, size)
    male = (torch.arange(len(images)) % 2).float()
    res = dict(model=name, image_size=size, images=len(images), source=source, batch_size=a.batch_size, threads=1)
    preds = {}
    for label, amp in (("fp32", "off"), ("auto", "auto")):
        pr = Predictor(model, device="cpu", amp=amp, batch_size=a.batch_size, workers=0)
        res[f"{label}_setting"] = repr(pr)
        rate, preds[label] = per_batch_rate(lambda x, m: pr.predict_images(x, m)[0], images, male, a.batch_size)
        res[f"{label}_images_per_s"] = round(rate, 3)
    try:
        from bonexage.export import OnnxModel, export_onnx
        onnx_path = scratch/f"{name}.onnx"
        export_onnx(model, onnx_path)
        pr = Predictor(OnnxModel(onnx_path, threads=1), device="cpu", amp="off", batch_size=a.batch_size, workers=0)
        rate, preds["onnxruntime"] = per_batch_rate(lambda x, m: pr.predict_images(x, m)[0], images, male, a.batch_size)
        res["onnxruntime_images_per_s"] = round(rate, 3)
    except ImportError as e: res["onnxruntime_skipped"] = str(e)
    for label in preds:
        if label == "fp32": continue
        d = np.abs(preds[label] - preds["fp32"])
        res[f"{label}_vs_fp32"] = dict(speedup=round(res[f"{label}_images_per_s"] / res["fp32_images_per_s"], 2),
                                       max_abs_diff_months=round(float(d.max()), 3),
                                       mean_abs_diff_months=round(float(d.mean()), 3))
    res["fp32_prediction_range_months"] = [round(float(preds["fp32"].min()), 1), round(float(preds["fp32"].max()), 1)]
    return res


def train_rate(model, size:int, steps:int, threads:int)->float:
    "Median images/s of `steps` bf16-or-fp32 (core auto) training steps, batch 32, with `threads` torch threads."
    import numpy as np, torch
    from bonexage.core import amp_dtype, autocast, set_threads
    set_threads(threads)
    dtype = amp_dtype("cpu", "auto")
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randint(0, 255, (32, 1, size, size), dtype=torch.uint8); m = torch.ones(32); y = torch.full((32,), 100.0)
    rates = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with autocast("cpu", dtype): loss = torch.nn.functional.l1_loss(model(x, m), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if i: rates.append(32 / (time.perf_counter() - t0))
    return float(np.median(rates))


def load_section(a, model, size:int)->dict:
    "Prediction and training images/s with 1 and 2 threads, idle and with one core busy."
    import torch
    from bonexage.core import set_threads
    from bonexage.predict import Predictor
    images, source = images_for(a, size)
    male = torch.ones(len(images))
    rows = []
    for loaded in (False, True):
        for threads in (1, 2):
            with (Load() if loaded else _Nothing()):
                set_threads(threads)
                pr = Predictor(model, device="cpu", amp="auto", batch_size=32, workers=0, threads=threads)
                rate, _ = per_batch_rate(lambda x, m: pr.predict_images(x, m)[0], images, male, min(32, len(images)))
                train = train_rate(model.train(), size, a.train_steps, threads); model.eval()
            rows.append(dict(concurrent_load=loaded, threads=threads, predict_images_per_s=round(rate, 2),
                             train_images_per_s=round(train, 2)))
    return dict(model="resnet18", image_size=size, source=source, rows=rows)


class _Nothing:
    def __enter__(self): return self
    def __exit__(self, *exc): pass


def main(argv=None):
    a = parse_args(argv)
    import torch
    from bonexage.core import cpu_has_bf16
    from bonexage.model import BoneAgeModel, ModelConfig, load_model
    result = dict(benchmark="cpu_speed", machine=_common.machine_info(), command=" ".join(sys.argv),
                  native_bf16=cpu_has_bf16(), results={})
    with tempfile.TemporaryDirectory(prefix="bonexage-bench-") as scratch:
        scratch = Path(scratch)
        if a.demo_checkpoint: demo = load_model(a.demo_checkpoint); demo_note = f"trained: {a.demo_checkpoint}"
        else:
            torch.manual_seed(0); demo = BoneAgeModel(ModelConfig(backbone="resnet18", image_size=128)).eval()
            demo_note = "untrained"
        size = 64 if a.quick else demo.config.image_size
        r = precision_section(a, "resnet18", demo, size, scratch); r["weights"] = demo_note
        result["results"]["resnet18_precision"] = r
        if not a.skip_convnext:
            torch.manual_seed(0)
            size = 64 if a.quick else 512
            convnext = BoneAgeModel(ModelConfig(backbone="convnext_tiny", image_size=size)).eval()
            last = [m for m in convnext.head.modules() if isinstance(m, torch.nn.Linear)][-1]
            torch.nn.init.normal_(last.weight, std=2.0 / last.in_features ** 0.5)  # spread the untrained outputs
            r = precision_section(a, "convnext_tiny", convnext, size, scratch)
            r["weights"] = "untrained backbone, random head (outputs spread over the range; differences indicative)"
            result["results"]["convnext_tiny_precision"] = r
        if not a.skip_load:
            result["results"]["threads_under_load"] = load_section(a, demo, 64 if a.quick else demo.config.image_size)
    _common.emit(result, a.out)


if __name__ == "__main__": main()
