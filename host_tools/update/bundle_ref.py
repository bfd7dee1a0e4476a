"""The reference of a device after an SMP update (docs/flashing.md): the update replaces only the
bundle in the inactive firmware bank; the UKI on the ESP stays. So the PCRs the device will show
are the installed image's for everything but the component register, and the new bundle's for
that register (it holds the bundle's events only, from reset: firmware/pcr_registry.py). This is
the reference `host_tools.update` must sign a PCR policy for, not the new build's own (whose UKI
differs: its .osrel names the new version)."""

from __future__ import annotations

import copy
from typing import Any


class BundleRefError(ValueError):
    pass


def bundle_update_reference(installed: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """reference.json of *installed*'s image running *new*'s bundle."""
    for key in ("board", "pcr_policy"):
        if installed.get(key) != new.get(key):
            raise BundleRefError(f"{key} differs: installed {installed.get(key)!r}, new {new.get(key)!r}")
    pcr = new["bundle"]["pcr"]
    if installed["bundle"]["pcr"] != pcr:
        raise BundleRefError(f"component register differs: installed PCR {installed['bundle']['pcr']}, new PCR {pcr}")
    out = copy.deepcopy(installed)
    out["events"] = ([e for e in installed["events"] if e["pcr"] != pcr]
                     + [e for e in new["events"] if e["pcr"] == pcr])
    for bank, values in new["pcrs"].items():
        out["pcrs"][bank][str(pcr)] = values[str(pcr)]
    for key in ("bundle", "components", "bundle_version", "anti_rollback_counter"):
        out[key] = copy.deepcopy(new[key])
    out["image_version"] = new["bundle_version"]
    return out
