#!/usr/bin/env python
"""Write a synthetic data set in the RSNA layout and build its preprocessing cache, timing both (for gpu.sh).

    python benchmarks/make_data.py /tmp/bench-data --n-train 3000 --size 512 --workers 16
"""
from __future__ import annotations
import argparse, os, sys, time

import _common


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_common.HelpFormatter)
    p.add_argument("dest", help="folder to write the data set into (the cache goes to DEST/.cache)")
    p.add_argument("--n-train", type=int, default=3000, help="synthetic training images")
    p.add_argument("--size", type=int, default=512, help="side of the synthetic images, in pixels")
    p.add_argument("--cache-size", type=int, default=None, help="side of the cached images (default: --size)")
    p.add_argument("--workers", type=int, default=0, help="processes for writing and caching (0: one per core)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data")
    _common.add_output_option(p)
    a = p.parse_args(argv)
    _common.use_stubs()
    from bonexage.core import available_cores
    from bonexage.cache import build_cache
    from bonexage.data import load_split
    from bonexage.synthetic import write_synthetic_rsna
    workers = a.workers or available_cores()
    t0 = time.perf_counter()
    write_synthetic_rsna(a.dest, n_train=a.n_train, n_test=0, size=a.size, seed=a.seed, workers=workers, progress=False)
    t1 = time.perf_counter()
    table = load_split(a.dest, "training")
    build = build_cache(table, os.path.join(a.dest, ".cache"), a.cache_size or a.size, workers=workers, progress=False)
    t2 = time.perf_counter()
    again = build_cache(table, os.path.join(a.dest, ".cache"), a.cache_size or a.size, workers=workers, progress=False)
    t3 = time.perf_counter()
    _common.emit(dict(benchmark="make_data", machine=_common.machine_info(), command=" ".join(sys.argv),
                      images=len(table), size=a.size, workers=workers,
                      write_seconds=round(t1 - t0, 2), write_images_per_s=round(len(table) / (t1 - t0), 1),
                      cache_build_seconds=round(t2 - t1, 2), cache_build_images_per_s=round(len(table) / (t2 - t1), 1),
                      cache_check_seconds=round(t3 - t2, 3), cache_check_decoded=len(again.decoded),
                      cache_bytes=build.path.stat().st_size), a.out)


if __name__ == "__main__": main()
