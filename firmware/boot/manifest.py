# The bundle manifest (docs/image-format.md; built by host_tools/image/bundle.py): one JSON object
#   {"anti_rollback_counter": int, "board": str, "bundle_version": str, "format_version": 1,
#    "components": [{"name": str, "version": str, "size": int, "sha256": hex, "pcr": int}, ...]}
# `components` is in measurement order. parse() checks every field's type and range and raises
# ParseError naming the field; it does not check the signature (stage.py does, before trusting it).

import json

from firmware.errors import ParseError

FORMAT_VERSION = 1
MAX_COMPONENTS = 32
MAX_MANIFEST = 64 * 1024
MAX_COUNTER = 0xFFFFFFFFFFFFFFFF


def _int(obj, key, where):
    v = obj.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ParseError("must be a non-negative integer", field=where + key)
    return v


def _str(obj, key, where, limit=255):
    v = obj.get(key)
    if not isinstance(v, str) or not v or len(v.encode("utf-8")) > limit:
        raise ParseError("must be a string of 1..%d bytes" % limit, field=where + key)
    return v


def _component_name(c, where):
    """A component name becomes one file name under the bundle's components/ and the code
    directory: a single path segment - no '/', no '\\', not '.' or '..', no NUL or other control
    character - or the manifest is refused (a name like '../etc/x' would write outside)."""
    name = _str(c, "name", where)
    if name in (".", ".."):
        raise ParseError("component name %r is not a single path segment" % name,
                         field=where + "name")
    for ch in name:
        if ch == "/" or ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ParseError("component name %r is not a single path segment (%r not allowed)"
                             % (name[:40], ch), field=where + "name")
    return name


def parse(data):
    if len(data) > MAX_MANIFEST:
        raise ParseError("manifest of %d bytes (at most %d)" % (len(data), MAX_MANIFEST),
                         field="manifest")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError) as e:
        raise ParseError("manifest is not JSON: %s" % e, field="manifest")
    except RuntimeError:
        # CPython's json raises RecursionError for deeply nested arrays/objects (found by fuzzing,
        # tests/fuzz); no manifest nests deeper than 3 levels.
        raise ParseError("manifest is not JSON: nested too deeply", field="manifest")
    if not isinstance(obj, dict):
        raise ParseError("manifest must be a JSON object", field="manifest")
    fmt = _int(obj, "format_version", "")
    if fmt != FORMAT_VERSION:
        raise ParseError("format_version %d is not %d" % (fmt, FORMAT_VERSION),
                         field="format_version")
    out = {
        "format_version": fmt,
        "board": _str(obj, "board", ""),
        "bundle_version": _str(obj, "bundle_version", ""),
        "anti_rollback_counter": _int(obj, "anti_rollback_counter", ""),
        "components": [],
    }
    if out["anti_rollback_counter"] > MAX_COUNTER:
        raise ParseError("must be at most 2**64-1 (it is measured as a u64)",
                         field="anti_rollback_counter")
    comps = obj.get("components")
    if not isinstance(comps, list) or not comps or len(comps) > MAX_COMPONENTS:
        raise ParseError("must be a list of 1..%d components" % MAX_COMPONENTS, field="components")
    seen = {}
    for i, c in enumerate(comps):
        where = "components[%d]." % i
        if not isinstance(c, dict):
            raise ParseError("must be an object", field="components[%d]" % i)
        name = _component_name(c, where)
        if name in seen:
            raise ParseError("duplicate component %r" % name, field=where + "name")
        seen[name] = True
        digest_hex = _str(c, "sha256", where, 64)
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            digest = b""
        if len(digest) != 32 or len(digest_hex) != 64:
            raise ParseError("must be 64 hex digits", field=where + "sha256")
        pcr = _int(c, "pcr", where)
        if pcr > 23:
            raise ParseError("PCR %d out of range 0..23" % pcr, field=where + "pcr")
        out["components"].append({"name": name, "version": _str(c, "version", where),
                                  "size": _int(c, "size", where), "sha256": digest, "pcr": pcr})
    return out
