"""Fetch a Debian kernel (or any .deb) and unpack it WITHOUT installing it.

``apt-get download`` fetches a package's .deb into the current directory
(no root needed for the file itself, no dpkg database changes); ``dpkg -x``
unpacks it into a directory.  The cloud kernel is reached through its
metapackage ``linux-image-cloud-amd64``, whose ``Depends`` names the real
versioned image package (``linux-image-6.1.0-NN-cloud-amd64``).

Reusable by the image builder and the QEMU runner::

    from host_tools.kernel_fetch import fetch_kernel
    kernel = fetch_kernel(Path("build/cache/kernel"))
    kernel.vmlinuz, kernel.version, kernel.root
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

DEFAULT_METAPACKAGE = "linux-image-cloud-amd64"
DEFAULT_CACHE = Path("build/cache/kernel")
_STAMP = "kernel.json"


class FetchError(RuntimeError):
    """Raised when a package cannot be downloaded or unpacked."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """An unpacked kernel package."""

    root: Path  # dpkg -x destination (contains boot/, lib/modules/, ...)
    vmlinuz: Path
    version: str  # uname -r, e.g. "6.1.0-56-cloud-amd64"
    package: str  # e.g. "linux-image-6.1.0-56-cloud-amd64"
    package_version: str  # Debian version, e.g. "6.1.140-1"
    deb: Path

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.version


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, check=False)


def download_deb(package: str, dest_dir: Path, *, allow_update: bool = True) -> Path:
    """``apt-get download PACKAGE`` into *dest_dir*; return the .deb path.

    Reuses an already downloaded ``PACKAGE_*.deb``.  Runs ``apt-get update``
    once and retries only if the first attempt fails (e.g. missing lists).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    # PACKAGE may carry a Debian architecture ("python3.11-minimal:arm64"); the file is
    # NAME_VERSION_ARCH.deb either way
    name = package.split(":", 1)[0]
    existing = sorted(dest_dir.glob(f"{name}_*.deb"))
    if existing:
        return existing[-1]
    proc = _run(["apt-get", "download", package], cwd=dest_dir)
    if proc.returncode != 0 and allow_update:
        upd = _run(["apt-get", "update"])
        if upd.returncode != 0:
            raise FetchError(f"apt-get update failed:\n{upd.stderr}")
        proc = _run(["apt-get", "download", package], cwd=dest_dir)
    if proc.returncode != 0:
        raise FetchError(f"apt-get download {package} failed:\n{proc.stderr}")
    found = sorted(dest_dir.glob(f"{name}_*.deb"))
    if not found:
        raise FetchError(f"apt-get download {package} produced no .deb in {dest_dir}")
    return found[-1]


def deb_field(deb: Path, field: str) -> str:
    """Return one control field of a .deb (``dpkg-deb -f``)."""
    proc = _run(["dpkg-deb", "-f", str(deb), field])
    if proc.returncode != 0:
        raise FetchError(f"dpkg-deb -f {deb} {field} failed:\n{proc.stderr}")
    return proc.stdout.strip()


def resolve_image_package(meta_deb: Path, arch: str | None = None) -> str:
    """From the metapackage .deb, the name of the real ``linux-image-*`` package (with
    ``:ARCH`` when *arch* is given)."""
    depends = deb_field(meta_deb, "Depends")
    for alt in depends.split(","):
        name = alt.split("|")[0].strip().split(" ")[0]
        if re.fullmatch(r"linux-image-\d[\w.+-]*", name):
            return f"{name}:{arch}" if arch else name
    raise FetchError(f"no linux-image-<version> dependency in {meta_deb}: {depends!r}")


def extract_deb(deb: Path, dest: Path) -> None:
    """``dpkg -x DEB DEST`` (no root, nothing installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = _run(["dpkg", "-x", str(deb), str(dest)])
    if proc.returncode != 0:
        raise FetchError(f"dpkg -x {deb} failed:\n{proc.stderr}")


def fetch_kernel(cache_dir: Path = DEFAULT_CACHE, metapackage: str = DEFAULT_METAPACKAGE,
                 arch: str | None = None) -> Kernel:
    """Download and unpack the kernel behind *metapackage* into *cache_dir*; *arch*: a Debian
    architecture other than the host's (``arm64``).

    Idempotent: if *cache_dir* already holds an unpacked kernel (recorded in
    ``kernel.json``) whose vmlinuz exists, it is reused without touching apt.
    """
    cache_dir = cache_dir.resolve()
    stamp = cache_dir / _STAMP
    if stamp.is_file():
        try:
            k = _kernel_from_stamp(cache_dir, json.loads(stamp.read_text()))
            if k.vmlinuz.is_file():
                return k
        except (KeyError, ValueError, TypeError):
            pass
    debs = cache_dir / "debs"
    meta = download_deb(f"{metapackage}:{arch}" if arch else metapackage, debs)
    package = resolve_image_package(meta, arch)
    deb = download_deb(package, debs)
    root = cache_dir / "root"
    extract_deb(deb, root)
    candidates = sorted((root / "boot").glob("vmlinuz-*"))
    if len(candidates) != 1:
        raise FetchError(f"expected one vmlinuz-* in {root / 'boot'}, found {candidates}")
    vmlinuz = candidates[0]
    info = {
        "package": package.split(":", 1)[0],
        "package_version": deb_field(deb, "Version"),
        "version": vmlinuz.name[len("vmlinuz-"):],
        "vmlinuz": str(vmlinuz.relative_to(cache_dir)),
        "deb": str(deb.relative_to(cache_dir)),
    }
    stamp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return _kernel_from_stamp(cache_dir, info)


def _kernel_from_stamp(cache_dir: Path, info: dict[str, str]) -> Kernel:
    return Kernel(
        root=cache_dir / "root",
        vmlinuz=cache_dir / info["vmlinuz"],
        version=info["version"],
        package=info["package"],
        package_version=info["package_version"],
        deb=cache_dir / info["deb"],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--package", default=DEFAULT_METAPACKAGE)
    args = ap.parse_args(argv)
    try:
        k = fetch_kernel(args.cache, args.package)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(k.vmlinuz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
