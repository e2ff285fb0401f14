"""BoneXage: pediatric bone age assessment from hand radiographs.

The names most callers need are available here and imported on first use, so `import bonexage` stays light:

    import bonexage
    predictor = bonexage.Predictor.from_checkpoint("checkpoints/best.pth")
    results = predictor.predict("hand.png", male=True, chronological_age_months=120)
    bonexage.results_frame(results)
"""
__version__ = "0.1.0"

import importlib

_LAZY = {"Predictor": "predict", "results_frame": "predict", "load_model": "model", "ModelConfig": "model",
         "read_radiograph": "io", "load_radiograph": "io", "bone_age_sds": "reference", "assess": "reference"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    "Import `bonexage.<module>` the first time one of its public names is asked for."
    if name not in _LAZY: raise AttributeError(f"module 'bonexage' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    "The module's names, the lazy ones included."
    return sorted(set(globals()) | set(_LAZY))
