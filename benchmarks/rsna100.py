#!/usr/bin/env python3
"""The RSNA 100x100 benchmark: real RSNA training radiographs (shrunk to 100x100), trained from scratch.

The data is one .npz file holding RSNA Pediatric Bone Age training images squeezed to 100 x 100 grey pixels
(arrays `images` (N,100,100) uint8, `id`, `boneage` in months, `male`); `--make-npz RSNA_DIR` writes one from the
full data set (see data/README.md for how to get it). One command lays the images out in the RSNA layout, splits
them 90/10 stratified by sex and age band with a fixed seed, trains through `bonexage-train` and evaluates through
`bonexage-evaluate` (a folder of fold checkpoints is an ensemble): the code paths a user runs on the full data set.
Each run writes a JSON summary (commands, machine, wall time, per-epoch log, metrics) that benchmarks/tables.py turns
into the tables of nbs/13_rsna100.ipynb and README.md.

    python benchmarks/rsna100.py --preset cpu                       # the CPU preset (2 cores, under an hour)
    python benchmarks/rsna100.py --preset gpu                       # ConvNeXt-Tiny on one GPU (minutes)
    python benchmarks/rsna100.py --preset cv                        # 3 folds, then the bias-corrected fold ensemble
    python benchmarks/rsna100.py --preset ablation --variant avgpool   # one ablation run
    python benchmarks/rsna100.py --preset cpu --set ema=0 --tag noema --note "no EMA"   # a recipe-search attempt
    python benchmarks/rsna100.py --baselines                        # predict-the-mean and ridge regression
    python benchmarks/rsna100.py --summarize                        # ablation intervals from all results so far
    python benchmarks/rsna100.py --preset cv --quick                # smoke test in a few minutes (measures nothing)

These are NOT RSNA test-set results: 100x100 images, from scratch, on a 10% split of the training set.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
NPZ = os.environ.get("BONEXAGE_RSNA100_NPZ", str(ROOT / "data" / "rsna100_dev.npz"))

AUG_STRENGTH = 0.4  # of the rotation, shift, zoom, brightness and contrast ranges of 02_data's augmentation
# Recipes; the search that led to them is recorded in nbs/13_rsna100.ipynb. Keys are bonexage-train settings.
# amp "auto": bf16 where the CPU computes it natively (as on the AMX Xeon of the first runs), else fp32.
PRESETS = {
    # the CPU recipe: lighter augmentation, an average of the weights (EMA over about 1/(1-0.995) = 200 of its 1,900
    # steps), channels-last (faster in fp32 on x86 too); 12 epochs fit in an hour on a 2-core AVX2 CPU in fp32
    "cpu": dict(backbone="resnet18", image_size=96, epochs=12, batch_size=64, lr=2e-3, warmup_epochs=1,
                weight_decay=1e-4, loss="l1", augment="device", aug_strength=AUG_STRENGTH, ema=0.995,
                channels_last=True, amp="auto", workers=0),
    # the first CPU recipe, kept because the ablation of 13_rsna100 ran on it
    "ablation": dict(backbone="resnet18", image_size=96, epochs=18, batch_size=64, lr=2e-3, warmup_epochs=1,
                     weight_decay=1e-4, loss="l1", augment="device", amp="auto", workers=0),
    "gpu": dict(backbone="convnext_tiny", image_size=160, epochs=60, batch_size=128, lr=1e-3, warmup_epochs=3,
                weight_decay=0.05, loss="l1", augment="device", workers=8),
    # cheap enough for K runs on 2 cores (3 folds in about an hour): the cpu recipe at 64 px and 8 epochs per fold (EMA
    # over about 100 of its 830 steps)
    "cv": dict(backbone="resnet18", image_size=64, epochs=8, batch_size=64, lr=2e-3, warmup_epochs=1,
               weight_decay=1e-4, loss="l1", augment="device", aug_strength=AUG_STRENGTH, ema=0.99,
               channels_last=True, amp="auto", workers=0),
}
CV_FOLDS, CV_COVERAGE = 3, 0.9
QUICK = dict(limit=300, epochs=1)  # --quick: a smoke test of the whole chain, not a measurement
# The ablation: each variant changes one claim of the original design.
VARIANTS = {"full": [], "avgpool": ["--pool", "avg"], "nosex": ["--no-use-sex"], "linear": ["--output", "linear"],
            "stretch": ["--resize-mode", "stretch"]}


def bin_path(name):
    "A console script of the environment running this file."
    p = Path(sys.executable).parent / name
    if not p.exists(): sys.exit(f"{p} not found: install bonexage first (make install)")
    return str(p)


def make_npz(rsna_dir: Path, out: Path):
    "Write the RSNA training images, each squeezed to 100 x 100 (aspect ratio not kept), into one .npz file."
    from PIL import Image
    from bonexage.data import load_split
    from bonexage.io import load_radiograph
    table = load_split(rsna_dir, "training").sort_values("id")
    images = np.stack([np.asarray(Image.fromarray((load_radiograph(p).pixels * 255).round().astype(np.uint8))
                                  .resize((100, 100), Image.BILINEAR)) for p in table.path])
    np.savez_compressed(out, images=images, id=table.id.astype(np.int32).to_numpy(),
                        boneage=table.bone_age_months.astype(np.float32).to_numpy(), male=table.male.to_numpy(bool))
    print(f"wrote {len(table)} images to {out}")


def layout(data: Path, npz: Path):
    "Write the .npz file's images once as an RSNA-layout folder: DATA/boneage-training-dataset/<id>.png and its table."
    if (data / "boneage-training-dataset.csv").exists(): return
    from PIL import Image
    if not npz.exists(): sys.exit(f"{npz}: no such file: pass --npz FILE (the RSNA training images at 100 x 100), "
                                  "or write it with --make-npz RSNA_DIR")
    with np.load(npz) as d: images, ids, ages, male = d["images"], d["id"], d["boneage"], d["male"]
    (data / "boneage-training-dataset").mkdir(parents=True, exist_ok=True)
    for image, i in zip(images, ids): Image.fromarray(image).save(data / "boneage-training-dataset" / f"{int(i)}.png")
    # whole months, as the RSNA tables have them; the table is written last, so a finished layout is a complete one
    pd.DataFrame({"id": ids.astype(int), "boneage": ages.astype(int), "male": np.where(male, "True", "False")}).to_csv(
        data / "boneage-training-dataset.csv", index=False)
    print(f"wrote {len(ids)} images to {data / 'boneage-training-dataset'}")


def make_split(data: Path, seed: int) -> Path:
    "A 90/10 split stratified by sex and age band, as its own RSNA-layout folder (images shared by symlinks)."
    from bonexage.data import read_table, split_train_valid
    split = data / f"split{seed}"
    if (split / "boneage-validation-dataset.csv").exists(): return split
    split.mkdir(parents=True, exist_ok=True)
    table = read_table(data / "boneage-training-dataset.csv")
    train, valid = split_train_valid(table, valid_frac=0.1, seed=seed)
    for name, part in (("training", train), ("validation", valid)):
        link = split / f"boneage-{name}-dataset"
        if not link.exists(): link.symlink_to((data / "boneage-training-dataset").resolve(), target_is_directory=True)
        out = pd.DataFrame({"id": part.id, "boneage": part.bone_age_months, "male": part.male})
        out.to_csv(split / f"boneage-{name}-dataset.csv", index=False)
    return split


def machine(device=None) -> dict:
    "Where the run computed (bonexage.core.machine_info)."
    from bonexage.core import machine_info
    return machine_info(device)


def train_command(args, split: Path, run_dir: Path) -> list:
    "The bonexage-train command of a run: the preset, --set overrides, the variant, --quick."
    cmd = [bin_path("bonexage-train"), "--data-dir", str(split), "--out-dir", str(run_dir), "--no-pretrained",
           "--seed", str(args.seed), "--overwrite", "--no-progress"]
    for k, v in train_settings(args).items():
        flag = f"--{k.replace('_', '-')}"
        if str(v) in ("True", "False"): cmd.append(flag if str(v) == "True" else f"--no-{flag[2:]}")  # on/off options
        else: cmd += [flag, str(v)]
    cmd += VARIANTS[args.variant]
    if args.preset == "cv": cmd += ["--folds", str(args.folds), "--fold", "all", "--split-seed", str(args.split_seed)]
    for option in ("device", "threads"):
        if getattr(args, option) is not None: cmd += [f"--{option}", str(getattr(args, option))]
    return cmd


def log_summary(log: pd.DataFrame) -> dict:
    "Best epoch and the roughness of the training loss (1.0: it fell every epoch)."
    if not len(log): return {}
    loss = log.train_loss.to_numpy()
    return dict(best_valid_mae=float(log.valid_mae.min()), best_epoch=int(log.valid_mae.idxmin()) + 1,
                roughness=float(np.abs(np.diff(loss)).sum() / max(abs(loss[0] - loss[-1]), 1e-9)),
                log=log.to_dict("records"))


def run(args):
    split = prepare_data(args)
    # a recipe-search attempt (--tag) gets its own name, so it never replaces a preset's recorded run
    name = f"search_{args.tag}" if args.tag else f"{args.preset}-{args.variant}-seed{args.seed}"
    run_dir, report = Path(args.runs) / name, Path(args.reports) / name
    cmd = train_command(args, split, run_dir)
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    trained = subprocess.run(cmd)
    result = dict(preset=args.preset, variant=args.variant, seed=args.seed, split_seed=args.split_seed,
                  started=time.strftime("%Y-%m-%d %H:%M", time.localtime(t0)),
                  smoke=args.quick, train_command=" ".join(cmd), train_seconds=time.time() - t0,
                  diverged=trained.returncode != 0, machine=machine(args.device))
    if args.tag: result.update(tag=args.tag, note=args.note, settings=train_settings(args))
    if args.preset == "cv": result.update(cv_result(args, split, run_dir, report, trained.returncode))
    else:
        log = pd.read_csv(run_dir / "log.csv") if (run_dir / "log.csv").exists() else pd.DataFrame()
        result["epochs_done"] = len(log)
        if trained.returncode == 0:
            eval_cmd = evaluate_command(args, split, run_dir / "last.pth", report)
            print("$", " ".join(eval_cmd), flush=True)
            subprocess.run(eval_cmd, check=True)
            metrics = json.loads((report / "metrics.json").read_text())
            result.update(eval_command=" ".join(eval_cmd), valid_mae=metrics.get("mae"),
                          valid_rmse=metrics.get("rmse"), metrics=metrics)
        result.update(log_summary(log))
    write_result(args, name, result)


def evaluate_command(args, split: Path, model: Path, report: Path) -> list:
    "The bonexage-evaluate command on the fixed validation split."
    cmd = [bin_path("bonexage-evaluate"), "--model", str(model), "--table", str(split / "boneage-validation-dataset.csv"),
           "--image-dir", str(split / "boneage-validation-dataset"), "--out-dir", str(report), "--no-progress"]
    for option in ("device", "threads"):
        if getattr(args, option) is not None: cmd += [f"--{option}", str(getattr(args, option))]
    return cmd


def cv_result(args, split: Path, run_dir: Path, report: Path, returncode: int) -> dict:
    "The folds' cross-validation, then the fold ensemble on the fixed validation split, raw and bias-corrected."
    folds = sorted(run_dir.glob("fold*/log.csv"))
    out = dict(folds=args.folds, epochs_planned=int(train_settings(args)["epochs"]),
               fold_logs={p.parent.name: log_summary(pd.read_csv(p)) for p in folds})
    if returncode != 0 or not (run_dir / "cv_metrics.json").exists(): return out
    cv = json.loads((run_dir / "cv_metrics.json").read_text())
    out["cv"] = dict(pooled_oof_mae=cv["pooled"]["mae"], metrics=cv)
    out["calibration"] = (json.loads((run_dir / "calibration.json").read_text())
                          if (run_dir / "calibration.json").exists() else None)
    # the folder of fold checkpoints is an ensemble carrying the pooled out-of-fold calibration
    cmd = evaluate_command(args, split, run_dir, report) + ["--coverage", str(CV_COVERAGE)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    m = json.loads((report / "metrics.json").read_text())
    pick = lambda d: {k: d[k] for k in ("mae", "rmse", "bias")}
    corrected = pick(m)
    ensemble = dict(n=m["n"], corrected=corrected, raw=pick(m.get("before_bias_correction", m)),
                    bias_corrected="before_bias_correction" in m, coverage_target=CV_COVERAGE,
                    eval_seconds=time.time() - t0, eval_command=" ".join(cmd), metrics=m)
    if m.get("interval_coverage"):
        overall = m["interval_coverage"][0]
        ensemble.update(interval_coverage=overall["coverage"], mean_interval_width=overall["mean_width_months"])
    out["ensemble"] = ensemble
    return out


def train_settings(args) -> dict:
    "The preset's bonexage-train settings with --quick and --set applied."
    return {**PRESETS[args.preset], **(QUICK if args.quick else {}), **dict(a.split("=", 1) for a in args.set)}


def write_result(args, name: str, result: dict):
    out = Path(args.results) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    keys = ("preset", "variant", "seed", "valid_mae", "valid_rmse", "train_seconds", "diverged")
    print(json.dumps({k: result.get(k) for k in keys if k in result} |
                     ({"ensemble": result["ensemble"]} if "ensemble" in result else {})))
    print(f"wrote {out}")


def prepare_data(args) -> Path:
    data = Path(args.data)
    layout(data, Path(args.npz))
    return make_split(data, args.split_seed)


def baselines(args):
    "Predict-the-mean and ridge regression on raw pixels, on the same split."
    from PIL import Image
    from bonexage.data import load_split
    from bonexage.evaluate import mean_baseline_mae
    split = prepare_data(args)
    tr, va = load_split(split, "training"), load_split(split, "validation")
    mean_mae = mean_baseline_mae(tr.bone_age_months, va.bone_age_months)
    def pixels(t):  # 50x50 grey levels plus sex, centred later
        X = np.stack([np.asarray(Image.open(p).convert("L").resize((50, 50), Image.BILINEAR), np.float32).ravel() / 255
                      for p in t.path])
        return np.hstack([X, t.male.to_numpy(np.float32)[:, None]])
    Xtr, Xva = pixels(tr), pixels(va)
    ytr = tr.bone_age_months.to_numpy()
    # alpha chosen on an inner 90/10 split of the training part only
    rng = np.random.default_rng(0); inner = rng.permutation(len(Xtr)); k = len(Xtr) // 10
    def ridge(X, y, alpha):
        Xc = X - X.mean(0)
        w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - y.mean()))
        return lambda Z: (Z - X.mean(0)) @ w + y.mean()
    alphas = [1, 10, 100, 1000, 10000]
    errs = [np.abs(ridge(Xtr[inner[k:]], ytr[inner[k:]], a)(Xtr[inner[:k]]) - ytr[inner[:k]]).mean() for a in alphas]
    alpha = alphas[int(np.argmin(errs))]
    ridge_mae = float(np.abs(ridge(Xtr, ytr, alpha)(Xva) - va.bone_age_months.to_numpy()).mean())
    res = dict(split_seed=args.split_seed, n_train=len(tr), n_valid=len(va), mean_mae=mean_mae, ridge_mae=ridge_mae,
               ridge_alpha=alpha, ridge_features="50x50 pixels + sex")
    out = Path(args.results) / "baselines.json"; out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1)); print(json.dumps(res))


def paired_bootstrap(err_a, err_b, n=2000, seed=0) -> dict:
    "Mean of |err_a| - |err_b| over the same images and its 95% bootstrap interval (images resampled with replacement)."
    d = np.abs(np.asarray(err_a)) - np.abs(np.asarray(err_b))
    idx = np.random.default_rng(seed).integers(0, len(d), (n, len(d)))
    lo, hi = np.percentile(d[idx].mean(1), [2.5, 97.5])
    return dict(delta_mae=float(d.mean()), ci95=[float(lo), float(hi)], n_images=int(len(d)))


def summarize(args):
    "Print the runs so far; write ablation_bootstrap.json from the evaluation reports (the tables: tables.py)."
    rows = [json.loads(p.read_text()) for p in sorted(Path(args.results).glob("*-seed*.json"))]
    rows = [r for r in rows if r.get("valid_mae") is not None and not r.get("smoke")]
    if not rows: sys.exit(f"no finished runs in {args.results}")
    df = pd.DataFrame(rows)
    g = df.groupby(["preset", "variant"])
    table = pd.DataFrame({"runs": g.size(), "valid MAE mean": g.valid_mae.mean(), "valid MAE sd": g.valid_mae.std(),
                          "RMSE mean": g.valid_rmse.mean(), "diverged": g.diverged.sum(),
                          "roughness": g.roughness.mean(), "minutes": g.train_seconds.mean() / 60})
    print(table.round(2).to_string())
    # Each variant against the full design of the same preset and seed, on the same validation images: how much of the
    # difference could be the luck of which 1,113 images were drawn (it says nothing about seed-to-seed variation).
    comparisons = []
    for r in rows:
        if r["variant"] == "full": continue
        ref = next((f for f in rows if f["variant"] == "full" and f["preset"] == r["preset"] and f["seed"] == r["seed"]), None)
        files = [Path(args.reports) / f"{x['preset']}-{x['variant']}-seed{x['seed']}" / "predictions.csv" for x in (r, ref or r)]
        if ref is None or not all(f.exists() for f in files): continue
        a, f = (pd.read_csv(x).set_index("id") for x in files)
        f = f.loc[a.index]
        comparisons.append(dict(preset=r["preset"], variant=r["variant"], seed=r["seed"],
                                **paired_bootstrap(a.error_months, f.error_months)))
    if comparisons:
        out = Path(args.results) / "ablation_bootstrap.json"
        out.write_text(json.dumps(comparisons, indent=1))
        for c in comparisons:
            print(f"{c['preset']} {c['variant']} seed {c['seed']}: MAE {c['delta_mae']:+.2f} months against full, "
                  f"95% interval {c['ci95'][0]:+.2f} to {c['ci95'][1]:+.2f} (paired bootstrap over {c['n_images']} images)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="cpu",
                   help="training recipe: 'cpu' (2 cores, under an hour), 'ablation' (the first cpu recipe, for the "
                        "ablation), 'gpu' (ConvNeXt-Tiny, one GPU) or 'cv' "
                        "(K folds of a cheap recipe, then the bias-corrected fold ensemble)")
    p.add_argument("--variant", choices=VARIANTS, default="full",
                   help="ablation: full design, avgpool (no GeM), nosex (no sex input), linear (no sigmoid range), "
                        "stretch (no padding)")
    p.add_argument("--folds", type=int, default=CV_FOLDS, help="number of folds of the cv preset")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['limit']} training images, {QUICK['epochs']} epoch (2 folds with cv); "
                        "results go to reports/rsna100/quick, never into the tables")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, shuffling, augmentation)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 90/10 split and of the folds (fixed across runs)")
    p.add_argument("--npz", default=NPZ, help="the RSNA training images at 100 x 100 (default: data/rsna100_dev.npz "
                                              "or $BONEXAGE_RSNA100_NPZ)")
    p.add_argument("--make-npz", metavar="RSNA_DIR", help="write --npz from the full RSNA data set in RSNA_DIR and exit")
    p.add_argument("--data", default=str(ROOT / "data" / "rsna100"), help="where the RSNA-layout copy is written")
    p.add_argument("--runs", default=str(ROOT / "checkpoints" / "rsna100"), help="checkpoints and training logs")
    p.add_argument("--reports", default=str(ROOT / "reports" / "rsna100"), help="bonexage-evaluate reports")
    p.add_argument("--results", default=None, help="JSON summaries (default: benchmarks/results/rsna100)")
    p.add_argument("--device", default=None, help="passed to bonexage-train/-evaluate (default: their 'auto')")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: bonexage's choice)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset setting, e.g. --set epochs=3 (for recipe search)")
    p.add_argument("--tag", help="record a recipe-search attempt as results/rsna100/search_TAG.json (with --set)")
    p.add_argument("--note", default="", help="with --tag: what the attempt tries, shown in 13_rsna100's search table")
    p.add_argument("--baselines", action="store_true", help="compute the mean and ridge baselines and exit")
    p.add_argument("--summarize", action="store_true", help="print the runs so far, write the ablation intervals, exit")
    args = p.parse_args(argv)
    if args.quick:
        args.folds = min(args.folds, 2)
        args.runs, args.reports = str(Path(args.runs) / "quick"), str(Path(args.reports) / "quick")
    if args.results is None:
        args.results = str(ROOT / ("reports/rsna100/quick" if args.quick else "benchmarks/results/rsna100"))
    if args.make_npz: return make_npz(Path(args.make_npz), Path(args.npz))
    if args.summarize: return summarize(args)
    if args.baselines: return baselines(args)
    run(args)


if __name__ == "__main__":
    main()
