#!/usr/bin/env python
"""Images per second a DataLoader delivers: decoding the PNGs every time (the original way) against the cache.

Both modes serve the same items through `bonexage.data.BoneAgeDataset` and a torch DataLoader, side by side in one
run: `decode` calls `bonexage.io.load_prepared` on the file for every item; `cache` reads the uint8 memmap built by
`bonexage.cache` (the one-off build is timed separately). The images of --images are repeated to --items items.

    python benchmarks/loader.py                       # the 14 raw RSNA samples, 512 px, 0 and 2 workers
    python benchmarks/loader.py --quick               # a few seconds, for smoke tests
"""
from __future__ import annotations
import argparse, shutil, sys, tempfile, time
from pathlib import Path

import _common


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_common.HelpFormatter)
    p.add_argument("--images", default=None, help="folder of radiographs (default: the raw RSNA samples, "
                   "$BONEXAGE_SAMPLES/raw or shared/data/rsna-samples/raw found above the repository)")
    p.add_argument("--size", type=int, default=512, help="side of the square images served, in pixels")
    p.add_argument("--resize-mode", "--fit", dest="resize_mode", default="pad", choices=("pad", "stretch"),
                   help="how images are made square (--fit: its earlier name)")
    p.add_argument("--items", type=int, default=280, help="items per pass: the images repeated to this many")
    p.add_argument("--batch-size", type=int, default=32, help="DataLoader batch size")
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts to measure")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per mode (the median is reported)")
    p.add_argument("--build-workers", type=int, default=None, help="processes building the cache (default: one per core)")
    p.add_argument("--cache-dir", default=None, help="where to build the cache (default: a temporary folder, deleted after)")
    p.add_argument("--modes", default="decode,cache", help="comma-separated modes: decode, cache")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of this process (default: torch's, one per "
                   "core); with 0 workers, collating a 512 px batch is a parallel copy that stalls on a CPU shared with other jobs")
    _common.add_output_option(p)
    p.add_argument("--quick", action="store_true", help="smoke test: 128 px, 16 items, 1 pass, 0 workers")
    a = p.parse_args(argv)
    if a.quick: a.size, a.items, a.repeats, a.workers, a.batch_size = 128, 16, 1, "0", 8
    return a


def passes(dataset, batch_size:int, workers:int, repeats:int)->list:
    "Images per second of `repeats` full passes over `dataset` (after one untimed warm-up pass)."
    import torch
    dl = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    rates = []
    for r in range(repeats + 1):
        t0, n = time.perf_counter(), 0
        for image, *_ in dl: n += len(image)
        if r: rates.append(n / (time.perf_counter() - t0))  # pass 0 warms up: workers start, files enter the page cache
    return rates


def main(argv=None):
    a = parse_args(argv)
    _common.use_stubs()
    from bonexage.cache import build_cache
    from bonexage.core import set_threads
    from bonexage.data import BoneAgeDataset
    if a.threads: set_threads(a.threads)
    folder = _common.images_folder(a.images)
    unique, table = _common.repeated_table(folder, a.items)
    cache_dir = Path(a.cache_dir) if a.cache_dir else Path(tempfile.mkdtemp(prefix="bonexage-bench-"))
    result = dict(benchmark="loader", machine=_common.machine_info(), command=" ".join(sys.argv),
                  config=dict(images=str(folder), unique_images=len(unique), items=len(table), size=a.size, resize_mode=a.resize_mode,
                              batch_size=a.batch_size, repeats=a.repeats, threads=a.threads), results=[])
    try:
        t0 = time.perf_counter()
        build = build_cache(unique, cache_dir, a.size, a.resize_mode, workers=a.build_workers, progress=False, rebuild=True)
        seconds = time.perf_counter() - t0
        result["cache_build"] = dict(images=len(unique), seconds=round(seconds, 3), images_per_s=round(len(unique) / seconds, 1),
                                     workers=a.build_workers, file=str(build.path), bytes=build.path.stat().st_size)
        datasets = dict(decode=BoneAgeDataset(table, a.size, a.resize_mode),
                        cache=BoneAgeDataset(table, a.size, a.resize_mode, images=build.images))
        for workers in map(int, a.workers.split(",")):
            row = {}
            for mode in a.modes.split(","):  # side by side: both modes at the same worker count, one after the other
                rates = passes(datasets[mode], a.batch_size, workers, a.repeats)
                row[mode] = _common.median(rates)
                result["results"].append(dict(mode=mode, workers=workers, images_per_s=round(row[mode], 1),
                                              runs=[round(r, 1) for r in rates]))
            if {"decode", "cache"} <= row.keys():
                result["results"].append(dict(mode="cache/decode", workers=workers, ratio=round(row["cache"] / row["decode"], 1)))
        ratios = [r["ratio"] for r in result["results"] if "ratio" in r]
        if ratios: result["target"] = dict(goal="cache at least 20x faster than decoding", met=min(ratios) >= 20, worst_ratio=min(ratios))
    finally:
        if not a.cache_dir: shutil.rmtree(cache_dir, ignore_errors=True)
    _common.emit(result, a.out)


if __name__ == "__main__": main()
