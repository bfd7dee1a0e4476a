"""Debian userland for the initramfs: fetch .debs, unpack them (never install), prune, compile.

Packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into
``build/cache/``; the host's package database is never touched.  The result is a mapping of
image paths to file contents (plus symlinks) that ``initramfs`` turns into a cpio archive.

Python byte code is compiled with the host's /usr/bin/python3, which is Debian's same 3.11 as
the packaged interpreter (same magic number), with ``invalidation_mode=UNCHECKED_HASH`` so the
.pyc files carry no source mtime (reproducible) and are never re-validated at import (no stat
of sources that are not shipped).  The standard library is shipped sourceless (``X.pyc`` in
place of ``X.py``) to halve its size.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from host_tools import kernel_fetch

PYVER = "3.11"
PACKAGES = (
    "busybox-static",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "python3-cryptography", "python3-cffi-backend",
    "libc6", "libssl3", "libexpat1", "zlib1g", "libffi8", "libgcc-s1",
)
HOST_PYTHON = "/usr/bin/python3"
STDLIB = f"usr/lib/python{PYVER}"
DIST_PACKAGES = "usr/lib/python3/dist-packages"
# Parts of the standard library a phone never imports: tests, GUIs, dev tools, databases.
STDLIB_DROP_DIRS = frozenset({
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "distutils", "sqlite3", "dbm", "curses", "venv", "xmlrpc", "wsgiref", "msilib",
    "__phello__", "site-packages", "dist-packages",
})
STDLIB_DROP_FILES = frozenset({"turtle.py", "pydoc.py", "doctest.py", "_pydecimal.py"})
# and, per architecture (board.json platform.triplet): config-3.11-<triplet>/,
# _sysconfigdata__<triplet>.py
# Extension modules kept; the others need libraries we do not ship (readline, sqlite, ...)
# or are test/legacy modules.
DYNLOAD_KEEP = frozenset({
    "_asyncio", "_contextvars", "_ctypes", "_decimal", "_hashlib", "_json", "_multibytecodec",
    "_multiprocessing", "_posixshmem", "_queue", "_ssl", "_typing", "_zoneinfo", "audioop",
    "mmap", "resource", "termios",
})
# Packages whose every import counts, inside functions too (import_closure); "__main__" is how
# modulefinder names each file it runs as a script (all of firmware/ and cryptography/).
FULL_SCAN = ("__main__", "firmware", "cryptography")
CRYPTOGRAPHY_DROP = ("cryptography/hazmat/bindings/_rust/__init__.pyi",)
# Modules a Python start-up or an error path may import without any static import naming them
# (the interpreter's own start-up, -m, tracebacks on the console, modules C code imports).
IMPORT_ROOTS_EXTRA = ("site", "_sitebuiltins", "runpy", "traceback", "linecache", "tokenize",
                      "encodings", "codecs", "io", "abc", "os", "stat", "posixpath",
                      "genericpath", "_collections_abc", "warnings", "importlib.util",
                      "importlib.machinery", "_strptime", "copyreg", "_weakrefset")
_STAMP_VERSION = 6  # bump when the pruning rules change


class UserlandError(RuntimeError):
    """Fetching, unpacking or compiling the userland failed."""


@dataclass(frozen=True)
class Arch:
    """The board's architecture as the userland needs it (host_tools/board.py Platform)."""

    triplet: str = "x86_64-linux-gnu"   # lib/<triplet>
    ld_so: str = "ld-linux-x86-64.so.2"  # the ELF interpreter
    ld_so_link: str = "lib64/ld-linux-x86-64.so.2"  # PT_INTERP, without the leading /


X86_64 = Arch()


@dataclass
class Tree:
    """Files for the image: path (relative, no leading /) -> (bytes, mode); symlinks."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[path.strip("/")] = (data, mode)


def fetch_and_unpack(cache: Path, packages: tuple[str, ...] = PACKAGES) -> Path:
    """Download the .debs into cache/debs and unpack them all into cache/userland."""
    debs_dir = cache / "debs"
    debs = [kernel_fetch.download_deb(p, debs_dir) for p in packages]
    stamp_data = json.dumps(sorted(d.name for d in debs)).encode()
    root = cache / "userland"
    stamp = cache / "userland.stamp"
    if stamp.is_file() and stamp.read_bytes() == stamp_data and root.is_dir():
        return root
    if root.exists():
        shutil.rmtree(root)
    for d in debs:
        kernel_fetch.extract_deb(d, root)
    stamp.write_bytes(stamp_data)
    return root


def _real(root: Path, rel: str) -> Path:
    """Resolve *rel* inside the unpacked tree, following symlinks within *root*."""
    p = root / rel
    for _ in range(16):
        if not p.is_symlink():
            return p
        target = p.readlink()
        p = (root / str(target).lstrip("/")) if target.is_absolute() else (p.parent / target)
    raise UserlandError(f"symlink loop at {rel}")


def elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries of an ELF file (``objdump -p``)."""
    proc = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise UserlandError(f"objdump -p {path} failed: {proc.stderr.strip()}")
    return [line.split()[1] for line in proc.stdout.splitlines()
            if line.strip().startswith("NEEDED")]


def _find_lib(root: Path, soname: str, triplet: str = X86_64.triplet) -> Path:
    for d in (f"lib/{triplet}", f"usr/lib/{triplet}"):
        p = root / d / soname
        if p.exists() or p.is_symlink():
            return _real(root, f"{d}/{soname}")
    raise UserlandError(f"shared library {soname} is in none of the unpacked packages")


def _stdlib_keep(rel: str, triplet: str = X86_64.triplet) -> bool:
    parts = rel.split("/")
    if (parts[0] in STDLIB_DROP_DIRS or parts[0] == f"config-{PYVER}-{triplet}"
            or "__pycache__" in parts):
        return False
    if len(parts) == 1 and parts[0] in STDLIB_DROP_FILES | {f"_sysconfigdata__{triplet}.py"}:
        return False
    if parts[0] == "lib-dynload":
        return parts[-1].split(".")[0] in DYNLOAD_KEEP
    return True


def import_closure(root: Path, firmware_dir: Path, triplet: str = X86_64.triplet) -> set[str]:
    """Image paths (relative to *root*) of the stdlib and dist-packages files that ``firmware/``
    and ``cryptography`` can import, found by the host's Python 3.11 ``modulefinder`` over the
    unpacked Debian tree (the same 3.11 stdlib).  In ``firmware`` and ``cryptography`` every
    static import counts, conditional ones and those inside functions included.  In the standard
    library only the imports a module runs when it is imported (module and class bodies, their
    try/except fallbacks) count, not those inside its functions or its ``if __name__ ==
    "__main__":`` block: those are self-tests and CLIs (``pickle._test`` -> doctest -> unittest ->
    asyncio, ``calendar.main`` -> argparse) or
    fallbacks of paths the firmware does not take (``hashlib`` logging a missing digest), and
    following them shipped ~4 MB of byte code nobody runs.  What the firmware runs is checked by
    the system tests in the booted image.  Every ``encodings.*`` module is kept (codecs are looked
    up by name at run time)."""
    script = (
        "import ast, json, modulefinder, pathlib, sys, types\n"
        "cfg = json.loads(sys.stdin.read())\n"
        "# extension modules of the board's architecture (PEP 3149 tags: the host's own\n"
        "# suffix names only the host's, and the board's lib-dynload would look empty)\n"
        "import importlib.machinery as im\n"
        "sys.path_hooks.insert(0, im.FileFinder.path_hook(\n"
        "    (im.ExtensionFileLoader, ['.cpython-311-%s.so' % cfg['triplet'], '.abi3.so', '.so']),\n"
        "    (im.SourceFileLoader, im.SOURCE_SUFFIXES),\n"
        "    (im.SourcelessFileLoader, im.BYTECODE_SUFFIXES)))\n"
        "sys.path_importer_cache.clear()\n"
        "FULL = tuple(cfg['full'])\n"
        "def full(name):\n"
        "    return name in FULL or name.startswith(tuple(f + '.' for f in FULL))\n"
        "def is_main_block(n):  # if __name__ == '__main__':\n"
        "    t = getattr(n, 'test', None)\n"
        "    return (isinstance(n, ast.If) and isinstance(t, ast.Compare)\n"
        "            and isinstance(t.left, ast.Name) and t.left.id == '__name__'\n"
        "            and len(t.comparators) == 1 and isinstance(t.comparators[0], ast.Constant)\n"
        "            and t.comparators[0].value == '__main__')\n"
        "class Parsed:  # stands in for the source file: compile() takes the AST\n"
        "    def __init__(self, tree):\n"
        "        self.tree = tree\n"
        "    def read(self):\n"
        "        return self.tree\n"
        "class Finder(modulefinder.ModuleFinder):\n"
        "    def load_module(self, fqname, fp, pathname, file_info):\n"
        "        if file_info[2] == modulefinder._PY_SOURCE and not full(fqname):\n"
        "            tree = ast.parse(fp.read(), pathname)\n"
        "            tree.body = [n for n in tree.body if not is_main_block(n)]\n"
        "            fp = Parsed(tree)\n"
        "        return super().load_module(fqname, fp, pathname, file_info)\n"
        "    def scan_code(self, co, m):\n"
        "        if not full(m.__name__):\n"
        "            # function bodies (CO_OPTIMIZED) become None: same constant indices\n"
        "            co = co.replace(co_consts=tuple(\n"
        "                None if isinstance(c, types.CodeType) and c.co_flags & 1 else c\n"
        "                for c in co.co_consts))\n"
        "        super().scan_code(co, m)\n"
        "mf = Finder(path=cfg['path'])\n"
        "for name in cfg['modules']:\n"
        "    try:\n"
        "        mf.import_hook(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "for f in cfg['scripts']:\n"
        "    mf.run_script(f)\n"
        "files = sorted({m.__file__ for m in mf.modules.values() if m.__file__})\n"
        "sys.stdout.write(json.dumps(files))\n")
    stdlib, dist = root / STDLIB, root / DIST_PACKAGES
    # Codecs are imported by name at run time (socket.getaddrinfo -> "idna" -> stringprep):
    # every encodings module is a root, so what each one imports comes along.
    codecs = ["encodings." + p.stem for p in sorted((stdlib / "encodings").glob("*.py"))
              if p.stem != "__init__"]
    scripts = [str(p) for p in sorted(firmware_dir.rglob("*.py"))]
    scripts += [str(p) for p in sorted((dist / "cryptography").rglob("*.py"))]
    cfg = {"path": [str(firmware_dir.parent), str(stdlib), str(stdlib / "lib-dynload"),
                    str(dist)],
           "modules": list(IMPORT_ROOTS_EXTRA) + codecs, "scripts": scripts,
           "full": list(FULL_SCAN), "triplet": triplet}
    proc = subprocess.run([HOST_PYTHON, "-I", "-c", script], input=json.dumps(cfg).encode(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise UserlandError(f"modulefinder failed: {proc.stderr.decode(errors='replace')}")
    keep: set[str] = set()
    for f in json.loads(proc.stdout):
        p = Path(f)
        for base in (root,):
            try:
                keep.add(p.relative_to(base).as_posix())
            except ValueError:
                pass
    for p in (stdlib / "encodings").rglob("*.py"):
        keep.add(p.relative_to(root).as_posix())
    return keep


def compile_pyc(sources: list[tuple[Path, str]]) -> list[bytes]:
    """Compile each (source file, path shown in tracebacks) with the host's Python 3.11."""
    if not sources:
        return []
    script = (
        "import importlib._bootstrap_external as be, importlib.util as iu, sys, json\n"
        "out = sys.stdout.buffer\n"
        "for src, dfile in json.loads(sys.stdin.read()):\n"
        "    data = open(src, 'rb').read()\n"
        "    code = compile(data, dfile, 'exec', dont_inherit=True)\n"
        "    h = be._code_to_hash_pyc(code, iu.source_hash(data), False)\n"
        "    out.write(len(h).to_bytes(4, 'big') + h)\n")
    proc = subprocess.run([HOST_PYTHON, "-I", "-c", script],
                          input=json.dumps([[str(s), d] for s, d in sources]).encode(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise UserlandError(f"byte-compiling failed: {proc.stderr.decode(errors='replace')}")
    out, pos = [], 0
    while pos < len(proc.stdout):
        n = int.from_bytes(proc.stdout[pos:pos + 4], "big")
        out.append(proc.stdout[pos + 4:pos + 4 + n])
        pos += 4 + n
    if len(out) != len(sources):
        raise UserlandError(f"compiled {len(out)} of {len(sources)} files")
    return out


def host_python_matches() -> None:
    proc = subprocess.run([HOST_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=False)
    if proc.stdout.strip() != PYVER:
        raise UserlandError(f"{HOST_PYTHON} is Python {proc.stdout.strip()!r}, need {PYVER} "
                            "to compile byte code for the image")


def _imports_digest(firmware_dir: Path) -> str:
    """Digest of the firmware's import lines: the pruned stdlib depends on them."""
    h = hashlib.sha256()
    for p in sorted(firmware_dir.rglob("*.py")):
        lines = [ln.strip() for ln in p.read_text().splitlines()
                 if ln.strip().startswith(("import ", "from "))]
        h.update(p.relative_to(firmware_dir).as_posix().encode() + b"\0"
                 + "\n".join(lines).encode() + b"\0")
    return h.hexdigest()


def python_tree(root: Path, cache: Path, firmware_dir: Path, arch: Arch = X86_64) -> Tree:
    """busybox + python3.11 + cryptography, pruned to the import closure of *firmware_dir*
    (``firmware/``) and cryptography, sourceless .pyc; cached by content (*cache* holds one
    architecture's packages: the key is their file names)."""
    triplet = arch.triplet
    key = hashlib.sha256(json.dumps([_STAMP_VERSION, sorted(
        p.name for p in (cache / "debs").glob("*.deb")), _imports_digest(firmware_dir)]
    ).encode()).hexdigest()[:16]
    cached = cache / f"userland-{key}.json"
    tree = Tree()
    if cached.is_file():
        return _load_tree(cached)
    host_python_matches()
    closure = import_closure(root, firmware_dir, triplet)
    tree.add("bin/busybox", _real(root, "bin/busybox").read_bytes(), 0o755)
    tree.symlinks["bin/sh"] = "busybox"
    py = _real(root, f"usr/bin/python{PYVER}")
    tree.add(f"usr/bin/python{PYVER}", py.read_bytes(), 0o755)
    tree.symlinks["usr/bin/python3"] = f"python{PYVER}"
    elves = [py]
    sources: list[tuple[Path, str]] = []
    stdlib = root / STDLIB
    for p in sorted(stdlib.rglob("*")):
        rel = p.relative_to(stdlib).as_posix()
        if p.is_dir() or not _stdlib_keep(rel, triplet) or f"{STDLIB}/{rel}" not in closure:
            continue
        if p.suffix == ".py":
            sources.append((p, f"/{STDLIB}/{rel}"))
        elif p.suffix == ".so":
            tree.add(f"{STDLIB}/{rel}", p.read_bytes(), 0o755)
            elves.append(p)
    # Debian's site.py adds /usr/lib/python3/dist-packages to sys.path.
    dist = root / DIST_PACKAGES
    for p in sorted(dist.rglob("*")):
        rel = p.relative_to(dist).as_posix()
        top = rel.split("/")[0]
        if p.is_dir() or "__pycache__" in rel or rel in CRYPTOGRAPHY_DROP:
            continue
        if not (top == "cryptography" or top.startswith("_cffi_backend")):
            continue
        if p.suffix == ".py":
            sources.append((p, f"/{DIST_PACKAGES}/{rel}"))
        elif p.suffix == ".so":
            tree.add(f"{DIST_PACKAGES}/{rel}", p.read_bytes(), 0o755)
            elves.append(p)
    # OpenSSL 3 loads its legacy provider at run time from the compiled-in MODULESDIR (Debian's
    # cryptography 38 asks for it at start-up), so no DT_NEEDED scan finds it: ship it by path.
    legacy = f"usr/lib/{triplet}/ossl-modules/legacy.so"
    tree.add(legacy, _real(root, legacy).read_bytes(), 0o755)
    elves.append(_real(root, legacy))
    for (src, dfile), pyc in zip(sources, compile_pyc(sources)):
        tree.add(dfile[:-3] + ".pyc", pyc)
    # Shared libraries: the DT_NEEDED closure of everything shipped, flat in one directory.
    seen: set[str] = set()
    todo = [n for e in elves for n in elf_needed(e)]
    while todo:
        soname = todo.pop()
        if soname in seen:
            continue
        seen.add(soname)
        lib = _find_lib(root, soname, triplet)
        tree.add(f"lib/{triplet}/{soname}", lib.read_bytes(), 0o755)
        todo += elf_needed(lib)
    # The interpreter path the binaries name in PT_INTERP.
    ld = arch.ld_so
    tree.add(f"lib/{triplet}/{ld}", _find_lib(root, ld, triplet).read_bytes(), 0o755)
    up = "../" * arch.ld_so_link.count("/")
    tree.symlinks[arch.ld_so_link] = f"{up}lib/{triplet}/{ld}"
    _save_tree(tree, cached)
    return tree


def _save_tree(tree: Tree, path: Path) -> None:
    blobs = path.with_suffix(".bin")
    index = []
    with blobs.open("wb") as f:
        for name in sorted(tree.files):
            data, mode = tree.files[name]
            index.append([name, mode, len(data)])
            f.write(data)
    path.write_text(json.dumps({"files": index, "symlinks": tree.symlinks}, sort_keys=True))


def _load_tree(path: Path) -> Tree:
    meta = json.loads(path.read_text())
    tree = Tree(symlinks=dict(meta["symlinks"]))
    with path.with_suffix(".bin").open("rb") as f:
        for name, mode, size in meta["files"]:
            tree.files[name] = (f.read(size), mode)
    return tree
