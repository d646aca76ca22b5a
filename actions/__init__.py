"""Action handlers, one module per namespace (`actions/omari.py` holds `omari.*`).

load_all() imports every module here so their @action decorators register, then the modules that
installed packages name in the `convoflow.actions` entry-point group.
"""
from __future__ import annotations

import importlib
import pkgutil

from engine.registry import registry

_loaded = False


def load_all() -> None:
    """Register every shipped action and every plug-in action (once per process)."""
    global _loaded
    if _loaded:
        return
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    registry.load_entry_points()
    _loaded = True
