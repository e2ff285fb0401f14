#!/usr/bin/env bash
# Register the notebook clean filter in this clone (`make install` runs it; safe to run again).
# git then stores each notebook as nbdev_clean would write it, whatever saved it (JupyterLab, VS Code, a script).
# Everything lives in the clone's own settings: `git config` (.git/config) and .git/info/attributes; no tracked file
# changes, so a checkout without the filter behaves exactly as before. To remove it:
#   git config --unset filter.clean-nbs.clean; sed -i '/filter=clean-nbs/d' .git/info/attributes
set -euo pipefail
cd "$(dirname "$0")/.."
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 0  # a source archive, not a clone: nothing to do
BIN=${VENV:-.venv}/bin
# git runs the filter from the top of the work tree, so relative paths hold even if the clone moves.
git config filter.clean-nbs.clean "$BIN/python .ci/nbclean_filter.py"
# not required: if the filter cannot run (no venv yet), git stores the file as it is and `make sync-check` reports it
git config filter.clean-nbs.required false
attributes=$(git rev-parse --git-path info/attributes)
mkdir -p "$(dirname "$attributes")"
grep -qxF '*.ipynb filter=clean-nbs' "$attributes" 2>/dev/null || echo '*.ipynb filter=clean-nbs' >> "$attributes"
