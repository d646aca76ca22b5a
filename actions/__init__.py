"""Action handlers, one module per namespace (`actions/omari.py` holds `omari.*`).

load_all() imports every module here so their @action decorators register, then the modules that
installed packages name in the `convoflow.actions` entry-point group. It keeps no state of its own: a
module is imported (and its decorators run) once per process by Python itself, so calling it again only
re-reads the list of modules (a few ms).
"""
from __future__ import annotations

import importlib
import pkgutil

from engine.registry import registry


def load_all() -> None:
    """Register every shipped action and every plug-in action (their modules are imported once per process)."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    registry.load_entry_points()
