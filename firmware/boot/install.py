# Installing a verified bundle into the tmpfs: code archives into app/ (sourceless), the other
# components into etc/. Runs between the separator and the unseal: every system call counts.

import os
import sys

from firmware.boot import ustar

CODE_COMPONENTS = ("phone-app", "sip-media")  # ustar archives of firmware/ code


def safe_member_path(name):
    parts = name.split("/")
    if not name.startswith("firmware/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError("unsafe path %r in code component" % name)
    return name


def install(outcome, root, cache_tag=None):
    """Write the verified components under root: code archives into app/, others into etc/.
    Code goes in sourceless: each `pkg/__pycache__/mod.<cache_tag>.pyc` of the archive is written
    as `pkg/mod.pyc` and its `pkg/mod.py` is left out (the sources stay in the measured component
    on the flash; console tracebacks then show file and line, not the code line). Half the files:
    this runs between the separator and the unseal, where every system call costs under TCG. A
    source whose byte code is for another interpreter (or missing) is installed as it is. One
    open() per file with its final mode and each directory made once."""
    if cache_tag is None:
        cache_tag = getattr(getattr(sys, "implementation", None), "cache_tag", None)
    suffix = ".%s.pyc" % cache_tag if cache_tag else None
    app, etc = root + "/app", root + "/etc"
    made = {}
    for name, data in outcome.components:
        if name in CODE_COMPONENTS:
            members = [(safe_member_path(m), body) for m, body in ustar.parse(data)]
            compiled = {}
            for rel, body in members:
                d, _, base = rel.rpartition("/")
                if suffix and d.endswith("/__pycache__") and base.endswith(suffix):
                    compiled[d[:-len("/__pycache__")] + "/" + base[:-len(suffix)] + ".py"] = body
            for rel, body in members:
                if "/__pycache__/" in rel:
                    continue
                if rel in compiled:
                    rel, body = rel[:-3] + ".pyc", compiled[rel]
                d = app + "/" + rel.rpartition("/")[0]
                if d not in made:
                    os.makedirs(d, mode=0o755, exist_ok=True)
                    made[d] = True
                create_file(app + "/" + rel, body)
        else:
            if etc not in made:
                os.makedirs(etc, mode=0o755, exist_ok=True)
                made[etc] = True
            create_file(etc + "/" + name, data)


def create_file(path, data, mode=0o444):
    # O_EXCL: a member name repeated in an archive is refused rather than silently overwritten
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view, off = data, 0
        while off < len(view):
            off += os.write(fd, view[off:])
    finally:
        os.close(fd)
