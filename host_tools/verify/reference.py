"""reference.json: what an image should measure (schema in docs/reference-schema.md).

Loaded strictly: a reference the verifier cannot fully understand is bad input (exit 2), never
partially used, because a silently ignored field would weaken the check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.verify._fw import BUNDLE_EVENT_NAME, bundle_label

SCHEMA_VERSION = 1
KNOWN_BANK_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
# The bank of the components' digests (`components[].sha256`): a log's digest is compared with the
# reference only in this bank, so only this bank's replay can make it evidence (docs/eventlog.md).
REFERENCE_BANK = "sha256"


class InputError(ValueError):
    """Bad input file; str() is the one-line reason the CLI prints before exiting with status 2."""


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    sha256: bytes
    pcr: int


@dataclass(frozen=True)
class Reference:
    schema: int
    board: str
    image_version: str
    components: tuple[Component, ...]
    pcrs: dict[str, dict[int, bytes]] = field(default_factory=dict)


def parse_pcr_values(obj: Any, where: str) -> dict[str, dict[int, bytes]]:
    """{"sha256": {"0": "hex", ...}} -> {"sha256": {0: bytes}}, checking banks, indices, sizes."""
    if not isinstance(obj, dict):
        raise InputError("%s: PCR values must be an object {bank: {index: hex}}" % where)
    out: dict[str, dict[int, bytes]] = {}
    for bank, values in obj.items():
        size = KNOWN_BANK_SIZES.get(bank)
        if size is None:
            raise InputError("%s: unknown PCR bank %r" % (where, bank))
        if not isinstance(values, dict):
            raise InputError("%s: bank %s must map PCR index to hex" % (where, bank))
        bank_out: dict[int, bytes] = {}
        for key, value in values.items():
            if (not isinstance(key, str) or not key.isascii() or not key.isdigit()
                    or not 0 <= int(key) <= 23):
                raise InputError("%s: %s PCR index %r is not 0..23" % (where, bank, key))
            raw = _hex(value, size, "%s: %s PCR %s" % (where, bank, key))
            bank_out[int(key)] = raw
        out[bank] = bank_out
    return out


def _hex(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise InputError("%s must be a hex string" % what)
    text = value[2:] if value.lower().startswith("0x") else value
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InputError("%s is not hex: %r" % (what, value[:80])) from None
    if len(raw) != size:
        raise InputError("%s must be %d bytes, got %d" % (what, size, len(raw)))
    return raw


def _str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InputError("%s: %r must be a non-empty string" % (what, key))
    return value


def parse_reference(obj: Any, where: str) -> Reference:
    if not isinstance(obj, dict):
        raise InputError("%s: reference must be a JSON object" % where)
    schema = obj.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise InputError("%s: schema_version %r not supported (this verifier reads %d)" % (
            where, schema, SCHEMA_VERSION))
    board = _str(obj, "board", where)
    image_version = _str(obj, "image_version", where)
    comps = obj.get("components")
    if not isinstance(comps, list):
        raise InputError("%s: 'components' must be a list" % where)
    components = []
    names = set()
    for i, c in enumerate(comps):
        what = "%s: components[%d]" % (where, i)
        if not isinstance(c, dict):
            raise InputError("%s must be an object" % what)
        name = _str(c, "name", what)
        if name in names:
            raise InputError("%s: component %r listed twice" % (what, name))
        names.add(name)
        pcr = c.get("pcr")
        if not isinstance(pcr, int) or isinstance(pcr, bool) or not 0 <= pcr <= 23:
            raise InputError("%s: 'pcr' must be an integer 0..23" % what)
        components.append(Component(name, _str(c, "version", what),
                                    _hex(c.get("sha256"), 32, what + ".sha256"), pcr))
    bundle = obj.get("bundle")
    if bundle is not None:
        # The PCR 14 bundle event (docs/reference-schema.md): compared like a component named
        # "bundle" measured first, whose version is its identity.
        what = "%s: bundle" % where
        if not isinstance(bundle, dict):
            raise InputError("%s must be an object" % what)
        if BUNDLE_EVENT_NAME in names:
            raise InputError("%s: a component is named %r too" % (what, BUNDLE_EVENT_NAME))
        counter = bundle.get("anti_rollback_counter")
        if not isinstance(counter, int) or isinstance(counter, bool) or not 0 <= counter < 2**64:
            raise InputError("%s: 'anti_rollback_counter' must be an integer 0..2**64-1" % what)
        pcr = bundle.get("pcr")
        if not isinstance(pcr, int) or isinstance(pcr, bool) or not 0 <= pcr <= 23:
            raise InputError("%s: 'pcr' must be an integer 0..23" % what)
        label = bundle_label(_str(bundle, "bundle_version", what), counter,
                             _str(bundle, "board", what))
        components.insert(0, Component(BUNDLE_EVENT_NAME, label,
                                        _hex(bundle.get("sha256"), 32, what + ".sha256"), pcr))
    pcrs = parse_pcr_values(obj.get("pcrs", {}), where + ": pcrs")
    return Reference(SCHEMA_VERSION, board, image_version, tuple(components), pcrs)


def load_json(path: Path) -> Any:
    try:
        text = path.read_bytes()
    except OSError as e:
        raise InputError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError("%s: not valid JSON: %s" % (path, e)) from None


def load_reference(path: Path) -> Reference:
    return parse_reference(load_json(path), str(path))


def load_pcrs(path: Path) -> dict[str, dict[int, bytes]]:
    values = parse_pcr_values(load_json(path), str(path))
    if not values:
        raise InputError("%s: no PCR banks" % path)
    return values
