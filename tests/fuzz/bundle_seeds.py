"""Small seeds from a bundle built by `make image` (build/<board>/bundle.tar): manifest.json as it
is, and ustar archives holding the bundle's small members with their original header blocks
(the large code components are left out so the seeds stay small). Used by fuzz_manifest and
fuzz_ustar at run time; `python tests/fuzz/bundle_seeds.py` refreshes tests/fuzz/corpus/."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

BUNDLE = os.path.join(runner.ROOT, "build", "qemu-x86_64", "bundle.tar")
BLOCK = 512
SMALL = 4096


def _members(raw):
    # (name, header offset, size) straight from the real archive's header blocks
    off = 0
    while off + BLOCK <= len(raw) and raw[off:off + BLOCK] != b"\x00" * BLOCK:
        name = raw[off:off + 100].split(b"\x00")[0]
        size = int(raw[off + 124:off + 136].split(b"\x00")[0].strip() or b"0", 8)
        yield name, off, size
        off += BLOCK + (size + BLOCK - 1) // BLOCK * BLOCK


def manifest_seeds():
    if not os.path.exists(BUNDLE):
        return
    raw = open(BUNDLE, "rb").read()
    for name, off, size in _members(raw):
        if name == b"manifest.json":
            yield raw[off + BLOCK:off + BLOCK + size]


def ustar_seeds():
    if not os.path.exists(BUNDLE):
        return
    raw = open(BUNDLE, "rb").read()
    small = []
    for name, off, size in _members(raw):
        if size <= SMALL:
            small.append(raw[off:off + BLOCK + (size + BLOCK - 1) // BLOCK * BLOCK])
    end = b"\x00" * (2 * BLOCK)
    yield b"".join(small[:2]) + end     # manifest.json, manifest.sig
    yield b"".join(small[2:]) + end     # the small components (device-config, ca-bundle)


if __name__ == "__main__":
    import hashlib

    for target, gen in (("manifest", manifest_seeds), ("ustar", ustar_seeds)):
        d = os.path.join(runner.CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for data in gen():
            path = os.path.join(d, "bundle-" + hashlib.sha1(data).hexdigest()[:12])
            open(path, "wb").write(data)
            print(path, len(data))
