# Jupyter server settings for this repository (`make lab` and `make browser-test` pass this file with --config).
# Every notebook JupyterLab saves is first cleaned exactly as `nbdev_clean` cleans it (settings.ini decides:
# execution counts and cell metadata go, outputs stay), so saving never makes the sync check fail.
# nbdev's own hook (nbdev.clean.clean_jupyter) does the same but only when settings.ini says `jupyter_hooks = True`
# and `nbdev_install_hooks` has written it into the user's global Jupyter configuration; this one needs neither.
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # traitlets runs this file with __file__ set


def clean_on_save(model, path, **kwargs):
    "Clean a notebook with nbdev's rules before the server writes it to disk."
    if model.get("type") != "notebook" or model.get("content", {}).get("nbformat") != 4: return
    from nbdev.clean import clean_nb
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    clean_nb(model["content"], clear_all=cfg.clear_all, clean_ids=cfg.clean_ids,
             allowed_metadata_keys=cfg.get("allowed_metadata_keys", "").split(),
             allowed_cell_metadata_keys=cfg.get("allowed_cell_metadata_keys", "").split())


c.ContentsManager.pre_save_hook = clean_on_save  # noqa: F821 (`c` is the config object traitlets provides)
