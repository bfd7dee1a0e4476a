# Compact JSON with sorted keys, one encoding per value, on CPython and MicroPython alike
# (MicroPython's json.dumps has neither `separators` nor `sort_keys`). Used wherever bytes are
# hashed, signed or compared: the secrets store, attestation evidence, the slot record.

import json


def dumps(v):
    """The text; ValueError names a value of a type JSON cannot hold here (floats included: none
    of these records has one, and their text form differs between runtimes)."""
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dumps(v[k]) for k in sorted(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(dumps(x) for x in v) + "]"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    raise ValueError("cannot encode a %s" % type(v).__name__)
