#!/usr/bin/env python
"""CPU prediction and training speed: fp32 against bf16 autocast against onnxruntime, and thread counts under load.

Everything is measured side by side in one process (plus, for the load, one competing process), on the same images:

- precision: `Predictor` with `amp="off"` (fp32), with `amp="bf16"` (bf16 autocast + channels_last: what `amp="auto"`
  picks on a CPU that computes bf16 natively, AMX or AVX512-BF16; elsewhere auto keeps fp32, and bf16 is measured only
  with --emulated-bf16),
  and on an ONNX export of the same model run by onnxruntime (`bonexage.export.OnnxModel`), all with the same number
  of threads; images/s (median of --repeats timed passes over all images, the modes interleaved so that they share
  the same background load) and the largest and mean absolute difference from fp32, in months, over the same images;
  for the ResNet-18 of `bonexage-demo` at its own size (128 px) and ConvNeXt-Tiny at 512 px;
- threads under load: prediction (`Predictor`, amp auto) and the production training step
  (`bonexage.train.train_one_epoch`, the demo's batch of 32, amp auto) of the demo model with 1 and 2 torch threads,
  on an idle machine and while a second process keeps one core busy (as another job on a shared machine would).

    python benchmarks/cpu_speed.py --checkpoint checkpoints/demo/best.pth   # writes benchmarks/results/cpu-speed.json
    python benchmarks/cpu_speed.py --quick -o /tmp/cpu-speed.json           # smoke test (64 px, a few images)

Without --checkpoint the ResNet-18 is untrained. The ConvNeXt-Tiny is always untrained here (no ImageNet download,
no GPU to train it). An untrained model's head gets random last-layer weights so that its outputs spread over the age
range and the differences between precisions are not trivially zero; differences measured on it are indicative only.
"""
from __future__ import annotations
import argparse, copy, multiprocessing as mp, os, sys, tempfile, time
from pathlib import Path

import _common

DEFAULT_OUTPUT = _common.ROOT/"benchmarks"/"results"/"cpu-speed.json"
LOAD = "one process running single-threaded float32 matrix products (one core kept busy)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_common.HelpFormatter)
    p.add_argument("--checkpoint", "--demo-checkpoint", dest="checkpoint", default=None,
                   help="a trained bonexage-demo checkpoint (ResNet-18, 128 px; `make demo` writes "
                        "checkpoints/demo/best.pth); default: an untrained ResNet-18 at 128 px")
    p.add_argument("--images", default=None, help="folder of radiographs, or 'phantoms' for synthetic ones "
                   "(default: the raw RSNA samples, else phantoms)")
    p.add_argument("--items", type=int, default=56, help="images per pass (the folder's, repeated)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass in the precision comparison")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads of the precision comparison")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per setting; the median is reported")
    p.add_argument("--train-batch-size", type=int, default=32, help="images per training step (the demo's)")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps per repeat")
    p.add_argument("--skip-convnext", action="store_true", help="skip ConvNeXt-Tiny at 512 px (the slow part)")
    p.add_argument("--skip-onnx", action="store_true", help="skip onnxruntime (also skipped when it is not installed)")
    p.add_argument("--emulated-bf16", action="store_true", help="measure bf16 also on a CPU without native bf16 "
                   "(slow: emulated bf16 runs at a fraction of fp32's speed, ConvNeXt-Tiny at 512 px for most of an hour); "
                   "always on with --quick")
    p.add_argument("--skip-load", action="store_true", help="skip the thread counts under load")
    _common.add_output_option(p, what=f"write the JSON result to this file (default: {DEFAULT_OUTPUT.relative_to(_common.ROOT)}"
                              "; with --quick: none); it is printed on stdout too")
    p.add_argument("--quick", action="store_true", help="smoke test: 64 px models, 8 images, 1 repeat, 2 training steps")
    a = p.parse_args(argv)
    for name in ("items", "batch_size", "threads", "repeats", "train_batch_size", "train_steps"):
        if getattr(a, name) < 1: p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.quick: a.items, a.repeats, a.train_steps, a.train_batch_size, a.emulated_bf16 = 8, 1, 2, 8, True
    if a.out is None and not a.quick: a.out = str(DEFAULT_OUTPUT)
    return a


# ------------------------------------------------------------------------------------------------------------ load
def _burn(ready, stop):
    "A competing job: one thread of dense float work until told to stop."
    import torch
    torch.set_num_threads(1)
    x = torch.randn(384, 384)
    ready.set()
    while not stop.is_set(): x = torch.tanh(x @ x * 1e-3)


class Load:
    "Context manager running `_burn` in another process: one core kept busy, as by another job."
    def __init__(self, on:bool=True): self.on = on
    def __enter__(self):
        if not self.on: return self
        ctx = mp.get_context("spawn")
        ready, self.stop = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=_burn, args=(ready, self.stop), daemon=True)
        self.proc.start()
        if not ready.wait(120): raise RuntimeError("the load process did not start within 120 s")
        time.sleep(0.5)  # let it reach full speed
        return self
    def __exit__(self, *exc):
        if not self.on: return
        self.stop.set(); self.proc.join(10)
        if self.proc.is_alive(): self.proc.kill(); self.proc.join()


# ---------------------------------------------------------------------------------------------------------- images
def load_images(a, size:int, resize_mode:str="pad")->tuple:
    "uint8 (N,1,S,S) tensor of the benchmark images at `size`, and where they came from."
    import numpy as np, torch
    from bonexage.io import load_prepared
    samples = _common.raw_samples() if not a.images else None
    folder = None if a.images == "phantoms" else Path(a.images) if a.images else samples
    if folder is not None:
        unique, table = _common.repeated_table(folder, a.items)
        cache = {p: load_prepared(p, size, resize_mode) for p in unique.path}
        x = np.stack([cache[p] for p in table.path])
        n = table.path.nunique()
        source = (f"{n} raw RSNA training radiographs" if folder == samples else f"{n} images from {folder.name}/") + (
                  f", repeated to {a.items}" if n < a.items else "")
    else:
        from bonexage.synthetic import make_phantom
        x = np.stack([make_phantom(12.0 + 200.0 * i / max(1, a.items - 1), i % 2 == 0, seed=i, size=size)
                      for i in range(a.items)])
        source = f"{a.items} synthetic phantoms (bonexage.synthetic)"
    return torch.from_numpy(x)[:, None].contiguous(), source


def dtype_name(dtype)->str:
    "An autocast dtype (None: none) as the JSON names it."
    return str(dtype).replace("torch.", "") if dtype is not None else "float32"


# ------------------------------------------------------------------------------------------------------- precision
def timed_pass(predictor, images, male, batch:int)->tuple:
    "(seconds, months) of one pass of `predictor.predict_images` over all images, `batch` at a time."
    import numpy as np
    t0, out = time.perf_counter(), []
    for i in range(0, len(images), batch): out.append(predictor.predict_images(images[i:i + batch], male[i:i + batch])[0])
    return time.perf_counter() - t0, np.concatenate(out)


def precision_section(a, model, weights:str, scratch:Path)->dict:
    "fp32 / bf16 / onnxruntime images/s and differences in months for one model, the modes interleaved."
    import numpy as np, torch
    from bonexage.core import cpu_has_bf16, set_threads, use_channels_last
    from bonexage.predict import Predictor
    set_threads(a.threads)
    size, backbone = model.config.image_size, model.config.backbone
    images, source = load_images(a, size, model.config.resize_mode)
    male = (torch.arange(len(images)) % 2).float()
    res = dict(model=backbone, image_size=size, weights=weights, images=len(images), source=source,
               batch_size=a.batch_size, threads=a.threads, repeats=a.repeats, modes=[])
    predictors, modes = {}, [("fp32", "off")]
    if cpu_has_bf16() or a.emulated_bf16: modes.append(("bf16", "bf16"))
    else: res["bf16_skipped"] = "no native bf16 on this CPU (amp auto keeps fp32 here); --emulated-bf16 measures it"
    for mode, amp in modes:  # each on its own copy: bf16 turns the model channels-last
        predictors[mode] = Predictor(copy.deepcopy(model), device="cpu", amp=amp, batch_size=a.batch_size, workers=0,
                                     threads=a.threads)
    if not a.skip_onnx:
        try:
            from bonexage.export import OnnxModel, export_onnx
            print(f"cpu_speed: exporting {backbone} at {size} px to ONNX", file=sys.stderr, flush=True)
            onnx_path = export_onnx(model, scratch/f"{backbone}-{size}.onnx")
            predictors["onnxruntime"] = Predictor(OnnxModel(onnx_path, threads=a.threads), device="cpu", amp="off",
                                                  batch_size=a.batch_size, workers=0)
        except Exception as e:  # noqa: BLE001 (not installed, or an export that does not reproduce the model)
            res["onnxruntime_skipped"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    for mode, pr in predictors.items():  # warm-up: one batch each (allocator, oneDNN kernels, onnxruntime arenas)
        pr.predict_images(images[:a.batch_size], male[:a.batch_size])
    seconds, months = {m: [] for m in predictors}, {}
    for r in range(a.repeats):
        print(f"cpu_speed: {backbone} {size} px, pass {r + 1}/{a.repeats}", file=sys.stderr, flush=True)
        for mode, pr in predictors.items():
            s, out = timed_pass(pr, images, male, a.batch_size)
            seconds[mode].append(s); months.setdefault(mode, out)
    fp32_rate = len(images) / _common.median(seconds["fp32"])
    for mode, pr in predictors.items():
        rates = [len(images) / s for s in seconds[mode]]
        diff = np.abs(months[mode] - months["fp32"])
        row = dict(mode=mode, setting=repr(pr), dtype=dtype_name(pr.dtype),
                   channels_last=mode != "onnxruntime" and use_channels_last("cpu", pr.dtype),
                   images_per_s=round(_common.median(rates), 3), runs=[round(x, 3) for x in rates],
                   speedup_vs_fp32=round(_common.median(rates) / fp32_rate, 3),
                   max_abs_diff_months=round(float(diff.max()), 4), mean_abs_diff_months=round(float(diff.mean()), 4))
        res["modes"].append(row)
    res["fp32_prediction_range_months"] = [round(float(months["fp32"].min()), 1), round(float(months["fp32"].max()), 1)]
    return res


def untrained(backbone:str, size:int):
    "An untrained model with the BoneXage head, its last layer drawn wide so that outputs spread over the ages."
    import torch
    from bonexage.model import BoneAgeModel, ModelConfig
    torch.manual_seed(0)
    model = BoneAgeModel(ModelConfig(backbone=backbone, image_size=size)).eval()
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(last.weight, std=2.0 / last.in_features ** 0.5)  # the head starts at zero: every age 120
    return model


# ------------------------------------------------------------------------------------------------ threads and load
def train_rates(model, batch:int, steps:int, repeats:int)->tuple:
    "Images/s of `repeats` runs of `steps` production training steps (one warm-up step first), and the dtype used."
    import torch
    from bonexage.core import amp_dtype, use_channels_last
    from bonexage.train import ComputeConfig, DistEnv, TrainConfig, make_loss, train_one_epoch
    device, dtype = torch.device("cpu"), amp_dtype("cpu", "auto")
    model = copy.deepcopy(model).train()
    if use_channels_last(device, dtype): model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(model=model.config, compute=ComputeConfig(progress=False), augment="none", epochs=1, batch_size=batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    g, s = torch.Generator().manual_seed(0), model.config.image_size
    image = torch.randint(0, 256, (batch, 1, s, s), dtype=torch.uint8, generator=g)
    male, age = (torch.rand(batch, generator=g) < 0.5).float(), torch.rand(batch, generator=g) * 200
    epoch = lambda n: train_one_epoch(model, [(image, male, age, None)] * n, optimizer, scheduler, scaler,
                                      make_loss("l1"), cfg, device, dtype, DistEnv(), 0)
    epoch(1)
    return [epoch(steps)["images_per_s"] for _ in range(repeats)], dtype


def load_section(a, model, weights:str)->dict:
    "Prediction and training images/s with 1 and 2 threads, idle and with one core busy."
    import torch
    from bonexage.core import set_threads
    from bonexage.predict import Predictor
    images, source = load_images(a, model.config.image_size, model.config.resize_mode)
    male = (torch.arange(len(images)) % 2).float()
    batch = min(a.train_batch_size, len(images))
    rows = []
    for loaded in (False, True):
        for threads in (1, 2):
            print(f"cpu_speed: {threads} thread(s), {'with' if loaded else 'without'} a concurrent load", file=sys.stderr,
                  flush=True)
            with Load(loaded):
                set_threads(threads)
                pr = Predictor(copy.deepcopy(model), device="cpu", amp="auto", batch_size=batch, workers=0, threads=threads)
                pr.predict_images(images[:batch], male[:batch])  # warm-up
                predict = [len(images) / timed_pass(pr, images, male, batch)[0] for _ in range(a.repeats)]
                train, dtype = train_rates(model, a.train_batch_size, a.train_steps, a.repeats)
                load1 = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
            rows.append(dict(concurrent_load=loaded, threads=threads,
                             predict_images_per_s=round(_common.median(predict), 2), predict_runs=[round(x, 2) for x in predict],
                             train_images_per_s=round(_common.median(train), 2), train_runs=[round(x, 2) for x in train],
                             load_average_1min=load1))
    return dict(model=model.config.backbone, image_size=model.config.image_size, weights=weights, source=source,
                images=len(images), predict_batch_size=batch, train_batch_size=a.train_batch_size,
                train_steps=a.train_steps, repeats=a.repeats, dtype=dtype_name(dtype), load=LOAD, rows=rows)


# ------------------------------------------------------------------------------------------------------------ main
def demo_model(a)->tuple:
    "(the demo ResNet-18, a description of its weights): the trained checkpoint, or an untrained one."
    from bonexage.model import load_model
    if a.checkpoint: return load_model(a.checkpoint).eval(), f"trained: {a.checkpoint}"
    return untrained("resnet18", 64 if a.quick else 128), "untrained, random head (differences indicative)"


def main(argv=None):
    a = parse_args(argv)
    _common.use_stubs()
    from bonexage.core import UsageError, amp_dtype, check_output_file, cpu_has_bf16, set_threads
    try:
        if a.out: check_output_file(a.out, "result file")
    except UsageError as e: print(f"cpu_speed.py: error: {e}", file=sys.stderr); sys.exit(2)
    for bad, message in ((a.checkpoint and not Path(a.checkpoint).is_file(), f"{a.checkpoint}: no such checkpoint"),
                         (a.images not in (None, "phantoms") and not Path(a.images or ".").is_dir(),
                          f"--images {a.images}: no such folder")):
        if bad: print(f"cpu_speed.py: error: {message}", file=sys.stderr); sys.exit(2)
    t0 = time.perf_counter()
    set_threads(a.threads)  # the precision comparison's threads: what the machine record says
    result = dict(benchmark="cpu_speed", smoke=a.quick, machine=_common.machine_info("cpu"), command=" ".join(sys.argv),
                  config=dict(checkpoint=a.checkpoint, items=a.items, batch_size=a.batch_size, threads=a.threads,
                              repeats=a.repeats, train_batch_size=a.train_batch_size, train_steps=a.train_steps),
                  native_bf16=cpu_has_bf16(), auto_precision=dtype_name(amp_dtype("cpu", "auto")), precision=[])
    demo, weights = demo_model(a)
    with tempfile.TemporaryDirectory(prefix="bonexage-bench-") as scratch:
        result["precision"].append(precision_section(a, demo, weights, Path(scratch)))
        if not a.skip_convnext:
            convnext = untrained("convnext_tiny", 64 if a.quick else 512)
            result["precision"].append(precision_section(
                a, convnext, "untrained backbone, random head (outputs spread over the range; differences indicative)",
                Path(scratch)))
            del convnext
    if not a.skip_load: result["threads_under_load"] = load_section(a, demo, weights)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    _common.emit(result, a.out)


if __name__ == "__main__": main()
