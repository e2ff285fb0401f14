"""git clean filter for notebooks: read a notebook on stdin, write it cleaned as `nbdev_clean` would, on stdout.

`make install` registers it (`git config filter.clean-nbs.clean ...`, and `*.ipynb filter=clean-nbs` in
.git/info/attributes), so what git stores is always clean, whatever editor saved the file.
nbdev's own `nbdev_clean --stdin` cannot serve here: nbdev 2.4 prints nothing for it and exits 0, and git would
store an empty notebook. This script exits 1 on any problem instead; the filter is not `required`, so git then
keeps the file as it is and the sync check reports it.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    from execnb.nbio import nb2str
    from nbdev.clean import clean_nb
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    nb = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    clean_nb(nb, clear_all=cfg.clear_all, clean_ids=cfg.clean_ids,
             allowed_metadata_keys=cfg.get("allowed_metadata_keys", "").split(),
             allowed_cell_metadata_keys=cfg.get("allowed_cell_metadata_keys", "").split())
    sys.stdout.buffer.write(nb2str(nb).encode("utf-8"))


if __name__ == "__main__":
    try: main()
    except Exception as e:  # git keeps the file unfiltered; say why on stderr
        sys.exit(f"nbclean_filter: {type(e).__name__}: {e}")
