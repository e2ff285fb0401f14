#!/usr/bin/env python
"""Training throughput and memory: the step in fp32 / AMP / AMP + channels_last / + torch.compile, and the whole pipeline.

`steps` times `bonexage.train.train_one_epoch` (the production training step: autocast, backward, gradient clipping,
AdamW, scheduler) on one batch of random uint8 images already on the device, for each variant, and reports images/s,
peak memory (peak RSS growth on the CPU, measured in a fresh subprocess per variant; `torch.cuda.max_memory_allocated`
on a GPU) and, on a GPU, the model FLOP utilisation: FLOPs of one step (3 x the forward FLOPs counted by `torch.utils.flop_counter`),
times steps per second, over the GPU's dense bf16 peak.

`pipeline` runs `bonexage.train.fit` end to end on a data set in the RSNA layout, twice, side by side:
the original-style pipeline (fp32, every PNG decoded from disk in every epoch, torchvision augmentation on the CPU in
DataLoader workers) and the fast one (preprocessing cache, augmentation on the device, `--amp auto` with channels_last
where it pays: bf16 on GPUs and on CPUs that compute it natively, else fp32; optionally torch.compile). Images/s are the training loop's own figures (`log.csv`), median over the epochs after the first.

    python benchmarks/train_step.py --what steps            # CPU: convnext_atto, 128 px
    python benchmarks/train_step.py --device cuda           # GPU: convnext_tiny, 512 px, batch 32 and 64
    python benchmarks/train_step.py --quick                 # smoke test, seconds
"""
from __future__ import annotations
import argparse, contextlib, json, os, subprocess, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import _common

VARIANTS = {  # name: (autocast, channels_last, torch.compile)
    "fp32": (False, False, False), "amp": (True, False, False),
    "amp_cl": (True, True, False), "amp_cl_compile": (True, True, True)}

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, in TFLOP/s: the "with sparsity" figures halved.
# H100 SXM5 1,979 sparse -> 989.4; H100 PCIe 1,513 -> 756; H100 NVL 1,671 -> 835; H200 (SXM) 1,979 -> 989.4;
# A100 624 -> 312. These are clock-boosted marketing peaks; sustained matrix throughput is lower (~700-800 on H100).
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0)]


def peak_tflops(device_name:str|None, override:float|None)->tuple:
    "(peak dense bf16 TFLOP/s, where the number comes from) for a GPU name, or the --peak-tflops override."
    if override: return override, "--peak-tflops"
    for key, value in PEAK_BF16_TFLOPS:
        if device_name and all(k in device_name for k in key.split()): return value, f"NVIDIA datasheet, {key}, dense bf16"
    return None, "unknown GPU: pass --peak-tflops"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_common.HelpFormatter)
    p.add_argument("--what", default="steps,pipeline", help="comma-separated: steps, pipeline")
    p.add_argument("--device", default="auto", help="'auto' (the GPU when there is one), 'cpu' or 'cuda'")
    p.add_argument("--backbone", default=None, help="backbone (default: convnext_tiny on a GPU, convnext_atto on the CPU)")
    p.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: 512 on a GPU, 128 on the CPU)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes for `steps` (default: 32,64 on a GPU, 16 on the CPU)")
    p.add_argument("--variants", default=None, help=f"comma-separated variants for `steps`: {', '.join(VARIANTS)} "
                   "(default: all; with --quick, fp32 and amp_cl)")
    p.add_argument("--compile-batch-sizes", default=None, help="batch sizes for which the compile variant runs (default: all); "
                   "compiling costs about a minute per shape")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: 20 on a GPU, 8 on the CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default: 5 on a GPU, 2 on the CPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per variant; the median is reported")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="run each variant in a fresh subprocess (default: on the CPU, where peak RSS is measured per process)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the accelerator's dense bf16 peak in TFLOP/s for the "
                   "model FLOP utilisation (default: from a table of NVIDIA datasheet values for H100/H200/A100)")
    p.add_argument("--data", default=None, help="pipeline: a data set in the RSNA layout (e.g. from bonexage-synth); "
                   "default: a layout of links to --images")
    p.add_argument("--images", default=None, help="pipeline without --data: a folder of radiographs repeated to --items "
                   "(default: the raw RSNA samples, $BONEXAGE_SAMPLES/raw or shared/data/rsna-samples/raw)")
    p.add_argument("--items", type=int, default=None, help="pipeline: training images per epoch (default: 1024 on a GPU, 64 on the CPU)")
    p.add_argument("--pipeline-batch-size", type=int, default=None, help="pipeline batch size (default: 64 on a GPU, 16 on the CPU)")
    p.add_argument("--workers", "--num-workers", type=int, default=None,
                   help="pipeline: DataLoader workers (default: one per core, at most 16)")
    p.add_argument("--epochs", type=int, default=3, help="pipeline: epochs per run; the first is a warm-up")
    p.add_argument("--pipelines", default="original,fast", help="comma-separated: original, fast, fast_compile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core); "
                   "on a CPU shared with other jobs, 1 avoids OpenMP threads waiting on descheduled siblings")
    _common.add_output_option(p)
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, one repeat, no compile")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    import torch
    a.device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    gpu = a.device.startswith("cuda")
    pick = lambda v, on_gpu, on_cpu: v if v is not None else (on_gpu if gpu else on_cpu)
    a.backbone, a.image_size = pick(a.backbone, "convnext_tiny", "convnext_atto"), pick(a.image_size, 512, 128)
    a.batch_sizes, a.steps, a.warmup = pick(a.batch_sizes, "32,64", "16"), pick(a.steps, 20, 8), pick(a.warmup, 5, 2)
    a.items, a.pipeline_batch_size = pick(a.items, 1024, 64), pick(a.pipeline_batch_size, 64, 16)
    a.workers, a.isolate = pick(a.workers, min(16, os.cpu_count() or 1), os.cpu_count() or 1), pick(a.isolate, False, True)
    a.variants = a.variants or ("fp32,amp_cl" if a.quick else ",".join(VARIANTS))
    if unknown := set(a.variants.split(",")) - set(VARIANTS): p.error(f"unknown --variants {sorted(unknown)}: use {', '.join(VARIANTS)}")
    if a.quick:
        a.image_size, a.batch_sizes, a.steps, a.warmup, a.repeats = 64, "4", 2, 1, 1
        a.items, a.pipeline_batch_size, a.epochs = 16, 4, 2
        if not gpu: a.backbone = "convnext_atto"
    return a


# ---------------------------------------------------------------------------------------------------------- steps
def count_flops(model, image, male)->int:
    """FLOPs of one training step of `model` on this batch: 3 x the forward FLOPs counted by torch's FLOP counter.

    The usual convention (backward = 2 x forward: gradients for the inputs and for the weights). We do not count the
    backward pass itself: torch's counter (2.11 to 2.14 at least) ignores `groups` in `convolution_backward`, so it
    charges every depthwise 7x7 convolution of a ConvNeXt as if it were dense: 77 instead of 27 GFLOP per image for
    ConvNeXt-Tiny at 224 px (pytorch/pytorch#183405 fixes the formula)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter: model(image, male)
    return 3 * counter.get_total_flops()


def measure_steps(spec:dict)->dict:
    "Images/s, memory and FLOPs of the production training step for one variant and batch size."
    import torch
    from bonexage.core import amp_dtype, set_threads
    from bonexage.model import BoneAgeModel, ModelConfig
    from bonexage.train import ComputeConfig, DistEnv, TrainConfig, make_loss, train_one_epoch
    device, (amp, channels_last, compiled) = torch.device(spec["device"]), VARIANTS[spec["variant"]]
    if spec.get("threads"): set_threads(spec["threads"])
    b, s = spec["batch_size"], spec["image_size"]
    torch.manual_seed(0)
    model_config = ModelConfig(backbone=spec["backbone"], image_size=s)
    model = BoneAgeModel(model_config).to(device)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    dtype = (amp_dtype(device, "auto") if device.type == "cuda" else torch.bfloat16) if amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    image = torch.randint(0, 256, (b, 1, s, s), dtype=torch.uint8, device=device)
    male, age = (torch.rand(b, device=device) < 0.5).float(), torch.rand(b, device=device) * 200
    flops = count_flops(model, image, male)
    cfg = TrainConfig(model=model_config, compute=ComputeConfig(progress=False), augment="none", epochs=1, batch_size=b)
    run = torch.compile(model) if compiled else model
    epoch = lambda n: train_one_epoch(run, [(image, male, age, None)] * n, optimizer, scheduler, scaler, make_loss("l1"),
                                      cfg, device, dtype, DistEnv(), 0)
    if device.type == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    rss_before, t0 = _common.max_rss_mb(), time.perf_counter()
    epoch(spec["warmup"])  # cudnn autotuning, compilation, allocator warm-up
    warmup_s, rates = time.perf_counter() - t0, [epoch(spec["steps"])["images_per_s"] for _ in range(spec["repeats"])]
    out = dict(spec, images_per_s=round(_common.median(rates), 2), runs=[round(r, 2) for r in rates],
               warmup_seconds=round(warmup_s, 1), flops_per_image=flops / b, dtype=str(dtype).replace("torch.", "") if dtype else "float32")
    if device.type == "cuda": out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else: out.update(peak_rss_mb=round(_common.max_rss_mb(), 1), peak_rss_growth_mb=round(_common.max_rss_mb() - rss_before, 1))
    return out


def run_isolated(spec:dict)->dict:
    "measure_steps in a fresh Python process, so that its peak RSS is its own."
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    line = next((l for l in r.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None: return dict(spec, error=(r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"])
    return json.loads(line[len("RESULT "):])


def steps_benchmark(a)->list:
    rows, compile_sizes = [], set(map(int, (a.compile_batch_sizes or a.batch_sizes).split(",")))
    for b in map(int, a.batch_sizes.split(",")):
        for variant in a.variants.split(","):
            if VARIANTS[variant][2] and b not in compile_sizes: continue
            spec = dict(variant=variant, batch_size=b, image_size=a.image_size, backbone=a.backbone, device=a.device,
                        steps=a.steps, warmup=a.warmup, repeats=a.repeats, threads=a.threads)
            print(f"steps: {variant}, batch {b}", file=sys.stderr, flush=True)
            try: row = run_isolated(spec) if a.isolate else measure_steps(spec)
            except Exception as e: row = dict(spec, error=f"{type(e).__name__}: {e}")
            rows.append(row)
            if a.device.startswith("cuda") and not a.isolate:
                import torch; torch.cuda.empty_cache()
    return rows


def add_mfu(rows:list, peak:float|None):
    "Achieved TFLOP/s and model FLOP utilisation of each measured row; speed-ups against fp32 at the same batch size."
    base = {r["batch_size"]: r["images_per_s"] for r in rows if r.get("variant") == "fp32" and "images_per_s" in r}
    for r in rows:
        if "images_per_s" not in r: continue
        r["achieved_tflops"] = round(r["images_per_s"] * r["flops_per_image"] / 1e12, 2)
        if peak: r["mfu"] = round(r["achieved_tflops"] / peak, 4)
        if r["batch_size"] in base: r["speedup_vs_fp32"] = round(r["images_per_s"] / base[r["batch_size"]], 2)


# ------------------------------------------------------------------------------------------------------- pipeline
def linked_rsna_layout(images:Path, items:int, dest:Path)->Path:
    "An RSNA-layout data set of `items` training images: links cycling through the radiographs in `images`."
    unique, table = _common.repeated_table(images, items)
    folder = dest/"boneage-training-dataset"; folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(table.path):
        link = folder/f"{i}{Path(path).suffix}"
        if not link.exists(): link.symlink_to(Path(path).resolve())
    rows = "\n".join(f"{i},{60 + (i * 37) % 150},{i % 2 == 0}" for i in range(items))
    (dest/"boneage-training-dataset.csv").write_text("id,boneage,male\n" + rows + "\n")
    return dest


def measure_pipeline(kind:str, a, data:Path, scratch:Path)->dict:
    "Train with bonexage.train.fit, original-style or fast, and return its images/s after the warm-up epoch."
    from bonexage.core import amp_dtype, resolve_device, use_channels_last
    from bonexage.data import load_split
    from bonexage.model import ModelConfig
    from bonexage.train import ComputeConfig, TrainConfig, check_config, fit
    n = len(load_split(data, "training"))
    valid_frac = max(2 / n, 0.02)
    base = TrainConfig(data_dir=str(data), out_dir=str(scratch/kind), model=ModelConfig(backbone=a.backbone, image_size=a.image_size),
                       pretrained=False, epochs=a.epochs, batch_size=a.pipeline_batch_size, warmup_epochs=0,
                       valid_frac=valid_frac, limit=a.items,
                       compute=ComputeConfig(workers=a.workers, device=a.device, progress=False))
    # fast: the production defaults (amp auto: bf16 on GPUs and on CPUs that compute it natively; channels_last where
    # it pays); original: fp32, contiguous, every image decoded in every epoch
    compute = dict(original=replace(base.compute, amp="off", channels_last=False, compile=False, no_cache=True),
                   fast=replace(base.compute, amp="auto", channels_last=None, cache=str(scratch/"cache")))
    compute["fast_compile"] = replace(compute["fast"], compile=True)
    c = check_config(replace(base, augment="cpu" if kind == "original" else "device", compute=compute[kind]))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr): history = fit(c, overwrite=True)["history"]
    rates = history.images_per_s.tolist()[1:] or history.images_per_s.tolist()
    cc, device = c.compute, resolve_device(a.device)
    dtype = amp_dtype(device, cc.amp)
    return dict(pipeline=kind, images_per_s=round(_common.median(rates), 2), runs=[round(r, 2) for r in rates],
                first_epoch_images_per_s=round(history.images_per_s[0], 2), wall_seconds=round(time.perf_counter() - t0, 1),
                limit=c.limit, batch_size=c.batch_size, workers=cc.workers,
                augment=c.augment, amp=cc.amp, dtype=str(dtype).replace("torch.", "") if dtype else "float32",
                channels_last=cc.channels_last if cc.channels_last is not None else use_channels_last(device, dtype),
                compile=cc.compile, cache=not cc.no_cache)


def pipeline_benchmark(a, scratch:Path)->dict:
    if a.data: data, source = Path(a.data), f"RSNA layout at {a.data}"
    else:
        images = _common.images_folder(a.images)
        data, source = linked_rsna_layout(images, a.items, scratch/"data"), f"{images} repeated to {a.items} items (links)"
    rows = []
    for kind in a.pipelines.split(","):
        print(f"pipeline: {kind}", file=sys.stderr, flush=True)
        try: rows.append(measure_pipeline(kind, a, data, scratch))
        except Exception as e: rows.append(dict(pipeline=kind, error=f"{type(e).__name__}: {e}"))
    rate = {r["pipeline"]: r.get("images_per_s") for r in rows}
    out = dict(data=source, image_size=a.image_size, backbone=a.backbone, results=rows)
    if rate.get("original") and (best := max((v for k, v in rate.items() if k != "original" and v), default=None)):
        out["fast_vs_original"] = round(best / rate["original"], 2)
    return out


def main(argv=None):
    a = parse_args(argv)
    _common.use_stubs()
    if a.threads:
        from bonexage.core import set_threads
        set_threads(a.threads)
    if a.child:
        print("RESULT " + json.dumps(measure_steps(json.loads(a.child))), flush=True)
        return
    result = dict(benchmark="train_step", machine=_common.machine_info(a.device), command=" ".join(sys.argv),
                  config={k: v for k, v in vars(a).items() if k not in ("child", "out")})
    import torch
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else None
    peak, source = peak_tflops(name, a.peak_tflops)
    what = a.what.split(",")
    if "steps" in what:
        rows = steps_benchmark(a)
        add_mfu(rows, peak)
        result["steps"] = dict(peak_bf16_tflops=peak, peak_source=source, results=rows)
    if "pipeline" in what:
        with tempfile.TemporaryDirectory(prefix="bonexage-bench-") as scratch:
            result["pipeline"] = pipeline_benchmark(a, Path(scratch))
        if a.device.startswith("cuda") and "fast_vs_original" in result["pipeline"]:
            r = result["pipeline"]["fast_vs_original"]
            result["target"] = dict(goal="fast pipeline at least 4x the original-style one on a GPU", met=r >= 4, ratio=r)
    _common.emit(result, a.out)


if __name__ == "__main__": main()
