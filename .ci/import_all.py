"Import bonexage and each of its modules in a plain Python process: test cells can hide missing imports."
import importlib, pkgutil, sys
import bonexage

failed = []
for mod in sorted(m.name for m in pkgutil.iter_modules(bonexage.__path__, "bonexage.")):
    try:
        importlib.import_module(mod)
        print("imported", mod)
    except Exception as e:  # report every broken module, not just the first
        failed.append(mod)
        print(f"FAILED to import {mod}: {type(e).__name__}: {e}", file=sys.stderr)
if "fastcore" in sys.modules:
    failed.append("fastcore")
    print("FAILED: importing bonexage pulled in fastcore (runtime code must not depend on it)", file=sys.stderr)
sys.exit(1 if failed else 0)
