"""Write README.md from nbs/index.ipynb (nbdev 2's own nbdev_readme needs Quarto, which we do not ship).

Markdown cells are copied as they are; code cells become ```python blocks without their `#|`
directives; cells marked `#| hide` are left out. `--check` only reports whether README.md is current.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root / "nbs" / "index.ipynb").read_text(encoding="utf-8"))
parts = ["<!-- Generated from nbs/index.ipynb by .ci/readme.py (make readme); edit the notebook, not this file. -->"]
for cell in nb["cells"]:
    src = "".join(cell["source"]).strip("\n")
    if cell["cell_type"] == "markdown":
        parts.append(src)
        continue
    lines = src.splitlines()
    directives = [l for l in lines if l.startswith("#|")]
    if any(d.replace(" ", "") in ("#|hide", "#|exporti", "#|export") for d in directives):
        continue
    code = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
    if code:
        parts.append(f"```python\n{code}\n```")
text = "\n\n".join(parts) + "\n"
readme = root / "README.md"
if "--check" in sys.argv:
    ok = readme.exists() and readme.read_text(encoding="utf-8") == text
    print("README.md is current" if ok else "README.md is out of date: run `make readme`")
    sys.exit(0 if ok else 1)
if not readme.exists() or readme.read_text(encoding="utf-8") != text:
    readme.write_text(text, encoding="utf-8")
