"""What provisioning needs from ``build/<board>/reference.json`` (docs/reference-schema.md): the
sealing PCR set, its predicted values, the components, the image and anti-rollback versions."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
# the boot chain's share of the default sealing set; the board's component register (the
# components' `pcr`, board.json component_pcr) joins it (docs/pcr-map.md)
DEFAULT_BOOT_PCRS = [4, 7, 11, 12]


class ReferenceError(ValueError):
    """reference.json lacks what sealing needs; the message names the file and field."""


@dataclass
class Reference:
    board: str
    image_version: str
    anti_rollback: int
    bank: str
    pcrs: list[int]
    expected: dict[int, bytes]
    components: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)

    def components_meta(self) -> list[dict[str, Any]]:
        return [{"name": c["name"], "version": c["version"], "sha256": c["sha256"].lower(),
                 "pcr": c["pcr"]} for c in self.components]


def _hex32(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ReferenceError(f"{where}: not 64 hex digits")
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def _default_pcrs(doc: dict[str, Any]) -> list[int]:
    """A reference without pcr_policy: the boot PCRs and the register its components are in."""
    comps = doc.get("components")
    regs = {c["pcr"] for c in comps if isinstance(c, dict) and isinstance(c.get("pcr"), int)
            and not isinstance(c.get("pcr"), bool)} if isinstance(comps, list) else set()
    return DEFAULT_BOOT_PCRS + sorted(regs)


def parse(doc: object, where: str = "reference.json", pcrs: list[int] | None = None) -> Reference:
    if not isinstance(doc, dict):
        raise ReferenceError(f"{where}: not a JSON object")
    if doc.get("schema_version") != 1:
        raise ReferenceError(f"{where}: schema_version {doc.get('schema_version')!r} is not 1")
    for k in ("board", "image_version"):
        if not isinstance(doc.get(k), str) or not doc[k]:
            raise ReferenceError(f"{where}: {k} missing or empty")
    policy_pcrs = pcrs or doc.get("pcr_policy") or _default_pcrs(doc)
    if (not isinstance(policy_pcrs, list) or not policy_pcrs
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 23 for p in policy_pcrs)):
        raise ReferenceError(f"{where}: pcr_policy must be a list of PCR indices 0..23")
    policy_pcrs = sorted(set(policy_pcrs))
    banks = doc.get("pcrs")
    if not isinstance(banks, dict) or not isinstance(banks.get("sha256"), dict):
        raise ReferenceError(f"{where}: pcrs.sha256 missing (the sealing bank)")
    values = banks["sha256"]
    expected = {}
    for p in policy_pcrs:
        if str(p) not in values:
            raise ReferenceError(f"{where}: pcrs.sha256 has no predicted value for PCR {p} of the policy")
        expected[p] = _hex32(values[str(p)], f"{where}: pcrs.sha256.{p}")
    comps = doc.get("components")
    if not isinstance(comps, list):
        raise ReferenceError(f"{where}: components must be a list")
    for i, c in enumerate(comps):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("version"), str):
            raise ReferenceError(f"{where}: components[{i}] needs name and version")
        _hex32(c.get("sha256"), f"{where}: components[{i}].sha256")
        if not isinstance(c.get("pcr"), int):
            raise ReferenceError(f"{where}: components[{i}].pcr must be an integer")
    rollback = doc.get("anti_rollback_counter", 0)
    if not isinstance(rollback, int) or isinstance(rollback, bool) or not 0 <= rollback <= 63:
        raise ReferenceError(f"{where}: anti_rollback_counter must be an integer 0..63")
    events = doc.get("events", [])
    if not isinstance(events, list):
        raise ReferenceError(f"{where}: events must be a list")
    return Reference(doc["board"], doc["image_version"], rollback, "sha256", policy_pcrs, expected,
                     comps, events)


def load(path: Path, pcrs: list[int] | None = None) -> Reference:
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise ReferenceError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise ReferenceError(f"{path}: not JSON ({e})") from None
    return parse(doc, str(path), pcrs)


def replay(events: list[dict[str, Any]]) -> dict[int, bytes]:
    """sha256 PCR values the listed events give from reset (zeros): for simulating a boot."""
    out: dict[int, bytes] = {}
    for e in events:
        p = int(e["pcr"])
        out[p] = hashlib.sha256(out.get(p, b"\x00" * 32) + bytes.fromhex(e["digest"])).digest()
    return out
