"""Action handlers, one module per namespace (`actions/omari.py` holds `omari.*`).

load_all() imports every module here so their @action decorators register (or leaves each to the registry
until a name of its namespace is looked up); the modules that installed
packages name in the `convoflow.actions` entry-point group are imported by the registry when it is first
asked for a name it does not know (or by registry.load_entry_points, at once). It keeps no state
of its own: a module is imported (and its decorators run) once per process by Python itself, so calling
it again only re-reads the list of modules (a few ms). The gateways' sandboxes (`*_sandbox.py`) are left
out: they register no action, and their provider imports one when it is used.

`flows validate` needs only the contracts on the decorators, so these modules import `requests`, the
database (`storage.payments`, `storage.bookings`, `storage.models`) and Flask inside the functions that
use them, not at the top: a new process checks a flow without loading them.
"""

from __future__ import annotations

import importlib
import pkgutil

from engine.registry import ActionRegistry, registry


def load_all(defer: bool = False) -> ActionRegistry:
    """Register every shipped action (their modules are imported once per process) and return the registry
    they are in, for the caller to hand to what checks or runs flows. The plug-ins' modules are imported by
    the registry the first time it is asked for a name it does not know or for all its names, or at once by
    registry.load_entry_points (serve and worker call it, so a broken plug-in stops them at start).

    defer=True (`flows validate`): each module is left for the registry to import when a name of its
    namespace is first looked up (registry.defer), so checking a flow that names only `core.*` imports no
    payment gateway's module."""
    modules = {
        mod.name: f"{__name__}.{mod.name}"
        for mod in pkgutil.iter_modules(__path__)
        if not mod.name.startswith("_") and not mod.name.endswith("_sandbox")
    }
    if defer:
        registry.defer(modules)
    else:
        for module in modules.values():
            importlib.import_module(module)
    return registry
