#!/usr/bin/env python3
"""The RSNA 100x100 benchmark: real RSNA training radiographs (shrunk to 100x100), trained from scratch.

One command lays the images out in the RSNA layout (../shared/tools/rsna100_layout.py), splits them 90/10
stratified by sex and age band with a fixed seed, trains through `bonexage-train` and evaluates the final
checkpoint through `bonexage-evaluate`: the code paths a user runs on the full data set. It writes a JSON summary
per run and, with --summarize, the tables used in nbs/13_rsna100.ipynb and README.md.

    python benchmarks/rsna100.py --preset cpu                       # the CPU preset (2 cores, < 60 min)
    python benchmarks/rsna100.py --preset gpu                       # ConvNeXt-Tiny on one GPU (< 8 min)
    python benchmarks/rsna100.py --preset cpu --variant avgpool --seed 1   # one ablation run
    python benchmarks/rsna100.py --baselines                        # predict-the-mean and ridge regression
    python benchmarks/rsna100.py --summarize                        # tables from all results so far

These are NOT RSNA test-set results: 100x100 images, from scratch, on a 10% split of the training set.
"""
import argparse, json, os, platform, shutil, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BONEXAGE_SHARED", ROOT.parent / "shared"))

# Recipes; the search that led to them is recorded in nbs/13_rsna100.ipynb.
PRESETS = {
    "cpu": dict(backbone="resnet18", image_size=96, epochs=18, batch_size=64, lr=2e-3, warmup_epochs=1,
                weight_decay=1e-4, loss="l1", augment="device", amp="bf16", num_workers=0),
    "gpu": dict(backbone="convnext_tiny", image_size=160, epochs=60, batch_size=128, lr=1e-3, warmup_epochs=3,
                weight_decay=0.05, loss="l1", augment="device", num_workers=8),
}
# The ablation: each variant changes one claim of the original design.
VARIANTS = {"full": [], "avgpool": ["--pool", "avg"], "nosex": ["--no-use-sex"], "linear": ["--output", "linear"],
            "stretch": ["--fit", "stretch"]}


def bin_path(name):
    "A console script of the environment running this file."
    p = Path(sys.executable).parent / name
    if not p.exists(): sys.exit(f"{p} not found: install bonexage first (make install)")
    return str(p)


def layout(data: Path):
    "Write the 11,128 images as an RSNA-layout folder once."
    if (data / "boneage-training-dataset.csv").exists(): return
    tool = SHARED / "tools" / "rsna100_layout.py"
    if not tool.exists(): sys.exit(f"{tool} not found: set BONEXAGE_SHARED to the folder holding tools/ and data/rsna100/")
    subprocess.run([sys.executable, str(tool), str(data)], check=True)


def make_split(data: Path, seed: int) -> Path:
    "A 90/10 split stratified by sex and age band, as its own RSNA-layout folder (images shared by symlinks)."
    from bonexage.data import read_table, split_train_valid
    split = data / f"split{seed}"
    if (split / "boneage-validation-dataset.csv").exists(): return split
    split.mkdir(parents=True, exist_ok=True)
    table = read_table(data / "boneage-training-dataset.csv")
    train, valid = split_train_valid(table, valid_frac=0.1, seed=seed)
    for name, part in (("training", train), ("validation", valid)):
        out = pd.DataFrame({"id": part.id, "boneage": part.bone_age_months, "male": part.male})
        out.to_csv(split / f"boneage-{name}-dataset.csv", index=False)
        link = split / f"boneage-{name}-dataset"
        if not link.exists(): link.symlink_to((data / "boneage-training-dataset").resolve(), target_is_directory=True)
    return split


def machine() -> dict:
    import torch
    info = dict(platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                cpus=os.cpu_count(), threads=torch.get_num_threads())
    if torch.cuda.is_available(): info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(args):
    data = Path(args.data)
    layout(data)
    split = make_split(data, args.split_seed)
    name = f"{args.preset}-{args.variant}-seed{args.seed}"
    run_dir, report = Path(args.runs) / name, Path(args.reports) / name
    train_cmd = [bin_path("bonexage-train"), "--data-dir", str(split), "--out-dir", str(run_dir), "--no-pretrained",
                 "--seed", str(args.seed), "--overwrite", "--no-progress"]
    for k, v in {**PRESETS[args.preset], **dict(a.split("=", 1) for a in args.set)}.items():
        train_cmd += [f"--{k.replace('_', '-')}", str(v)]
    train_cmd += VARIANTS[args.variant]
    if args.device: train_cmd += ["--device", args.device]
    print("$", " ".join(train_cmd), flush=True)
    t0 = time.time()
    trained = subprocess.run(train_cmd)
    train_s = time.time() - t0
    log = pd.read_csv(run_dir / "log.csv") if (run_dir / "log.csv").exists() else pd.DataFrame()
    result = dict(preset=args.preset, variant=args.variant, seed=args.seed, split_seed=args.split_seed,
                  train_command=" ".join(train_cmd), train_seconds=train_s, diverged=trained.returncode != 0,
                  epochs_done=len(log), machine=machine())
    if trained.returncode == 0:
        eval_cmd = [bin_path("bonexage-evaluate"), "--model", str(run_dir / "last.pth"),
                    "--table", str(split / "boneage-validation-dataset.csv"),
                    "--image-dir", str(split / "boneage-validation-dataset"), "--out", str(report)]
        if args.device: eval_cmd += ["--device", args.device]
        print("$", " ".join(eval_cmd), flush=True)
        subprocess.run(eval_cmd, check=True)
        metrics = json.loads((report / "metrics.json").read_text()) if (report / "metrics.json").exists() else {}
        result.update(eval_command=" ".join(eval_cmd), valid_mae=metrics.get("mae"), valid_rmse=metrics.get("rmse"),
                      metrics=metrics)
    if len(log):
        loss = log.train_loss.to_numpy()
        result.update(best_valid_mae=float(log.valid_mae.min()), best_epoch=int(log.valid_mae.idxmin()) + 1,
                      roughness=float(np.abs(np.diff(loss)).sum() / max(abs(loss[0] - loss[-1]), 1e-9)),
                      log=log.to_dict("records"))
    out = Path(args.results) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: result.get(k) for k in ("preset", "variant", "seed", "valid_mae", "valid_rmse",
                                                  "train_seconds", "diverged")}))


def baselines(args):
    "Predict-the-mean and ridge regression on raw pixels, on the same split."
    from PIL import Image
    from bonexage.data import load_split
    data = Path(args.data); layout(data); split = make_split(data, args.split_seed)
    tr, va = load_split(split, "training"), load_split(split, "validation")
    mean_mae = float(np.abs(va.bone_age_months - tr.bone_age_months.mean()).mean())
    def pixels(t):  # 50x50 grey levels plus sex, centred later
        X = np.stack([np.asarray(Image.open(p).convert("L").resize((50, 50), Image.BILINEAR), np.float32).ravel() / 255
                      for p in t.path])
        return np.hstack([X, t.male.to_numpy(np.float32)[:, None]])
    Xtr, Xva = pixels(tr), pixels(va)
    mu, ytr = Xtr.mean(0), tr.bone_age_months.to_numpy()
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
    rows = [json.loads(p.read_text()) for p in sorted(Path(args.results).glob("*-seed*.json"))]
    if not rows: sys.exit(f"no results in {args.results}")
    df = pd.DataFrame(rows)
    g = df.groupby(["preset", "variant"])
    table = pd.DataFrame({"runs": g.size(), "valid MAE mean": g.valid_mae.mean(), "valid MAE sd": g.valid_mae.std(),
                          "RMSE mean": g.valid_rmse.mean(), "diverged": g.diverged.sum(),
                          "roughness": g.roughness.mean(), "minutes": g.train_seconds.mean() / 60})
    print(table.round(2).to_string())
    b = Path(args.results) / "baselines.json"
    if b.exists(): print(json.loads(b.read_text()))
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
    p.add_argument("--preset", choices=PRESETS, default="cpu", help="training recipe: 'cpu' (2 cores, < 60 min) or 'gpu'")
    p.add_argument("--variant", choices=VARIANTS, default="full",
                   help="ablation: full design, avgpool (no GeM), nosex (no sex input), linear (no sigmoid range), "
                        "stretch (no padding)")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, shuffling, augmentation)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 90/10 split (fixed across runs)")
    p.add_argument("--data", default=str(ROOT / "data" / "rsna100"), help="where the RSNA-layout copy is written")
    p.add_argument("--runs", default=str(ROOT / "checkpoints" / "rsna100"), help="checkpoints and training logs")
    p.add_argument("--reports", default=str(ROOT / "reports" / "rsna100"), help="bonexage-evaluate reports")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "rsna100"), help="JSON summaries")
    p.add_argument("--device", default=None, help="passed to bonexage-train/-evaluate (default: their 'auto')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset setting, e.g. --set epochs=3 (for recipe search)")
    p.add_argument("--baselines", action="store_true", help="compute the mean and ridge baselines and exit")
    p.add_argument("--summarize", action="store_true", help="print the tables of all results so far and exit")
    args = p.parse_args(argv)
    if args.summarize: return summarize(args)
    if args.baselines: return baselines(args)
    run(args)


if __name__ == "__main__":
    main()
