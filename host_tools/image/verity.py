"""dm-verity hash tree, format version 1, no superblock (what `veritysetup format --no-superblock
--format=1 --hash=sha256 --data-block-size=4096 --hash-block-size=4096 --salt=S` writes; the tests
check it does). Linux Documentation/admin-guide/device-mapper/verity.rst:

* level 0 holds the hash of every data block, the next level the hash of every level-0 block, and
  so on until one block holds them all; each hash is SHA-256(salt || block) (version 1: salt
  first), each hash block holds 4096/32 = 128 hashes and is zero-padded;
* on the hash device the levels are stored top first (the single top block, then the level under
  it, ..., level 0 last: dm-verity-target.c, verity_ctr's hash_level_block);
* the root hash is SHA-256(salt || the top block); with a single data block there are no levels
  and the root hash is that block's hash.

The tree is written right after the data on the same partition, so the kernel's table is
``1 DEV DEV 4096 4096 DATA_BLOCKS DATA_BLOCKS sha256 ROOT SALT``.
"""

from __future__ import annotations

import hashlib

BLOCK = 4096
DIGEST = 32
PER_BLOCK = BLOCK // DIGEST


class VerityError(ValueError):
    """The data cannot be given a hash tree (the message says why)."""


def _hash_blocks(data: bytes, salt: bytes) -> bytes:
    """The hashes of each BLOCK of data, packed PER_BLOCK to a zero-padded hash block."""
    out = bytearray()
    for i in range(0, len(data), BLOCK):
        out += hashlib.sha256(salt + data[i:i + BLOCK]).digest()
    out += b"\0" * (-len(out) % BLOCK)
    return bytes(out)


def hash_tree(data: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """(the hash tree as stored after the data, the root hash) for *data*, a whole number of
    4096-byte blocks."""
    if not data or len(data) % BLOCK:
        raise VerityError(f"data must be a positive multiple of {BLOCK} bytes, not {len(data)}")
    if len(salt) > 256:
        raise VerityError(f"salt of {len(salt)} bytes is longer than dm-verity takes (256)")
    if len(data) == BLOCK:  # no levels: the root hash is the data block's own hash
        return b"", hashlib.sha256(salt + data).digest()
    levels = [_hash_blocks(data, salt)]
    while len(levels[-1]) > BLOCK:
        levels.append(_hash_blocks(levels[-1], salt))
    root = hashlib.sha256(salt + levels[-1]).digest()
    return b"".join(reversed(levels)), root


def pad(data: bytes) -> bytes:
    """*data* zero-padded to a whole number of blocks."""
    return data + b"\0" * (-len(data) % BLOCK)
