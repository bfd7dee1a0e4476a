"""CLI: python -m host_tools.image --board qemu-x86_64 --out build/qemu-x86_64"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_tools.image.build import BuildOptions, build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.image",
                                 description="Build the disk image, signed bundle and "
                                             "reference.json for one board.")
    ap.add_argument("--board", default="qemu-x86_64")
    ap.add_argument("--out", type=Path, help="output directory (default build/<board>)")
    ap.add_argument("--signing-key", type=Path,
                    help="Ed25519 PKCS#8 PEM vendor key (default: development key, created "
                         "under build/keys/ on first build)")
    ap.add_argument("--ca-bundle", type=Path, help="PEM CA bundle (default: development CA)")
    ap.add_argument("--keys", type=Path, help="directory of development keys (default build/keys)")
    ap.add_argument("--cache", type=Path, help="package cache (default build/cache)")
    ap.add_argument("--bundle-version", help="overrides board.json image_version")
    ap.add_argument("--anti-rollback-counter", type=int,
                    help="overrides board.json anti_rollback_counter")
    args = ap.parse_args(argv)
    out = args.out or Path("build") / args.board
    try:
        result = build(BuildOptions(board=args.board, out=out, signing_key=args.signing_key,
                                    ca_bundle=args.ca_bundle, keys=args.keys, cache=args.cache,
                                    bundle_version=args.bundle_version,
                                    anti_rollback_counter=args.anti_rollback_counter))
    except (OSError, ValueError, RuntimeError) as e:
        print(f"image: error: {e}", file=sys.stderr)
        return 1
    size = result.disk.stat().st_size
    print(f"image: {result.disk} ({size // (1024 * 1024)} MiB)")
    print(f"image: reference {out / 'reference.json'}")
    pcrs = result.reference["pcrs"]
    assert isinstance(pcrs, dict)
    for pcr, value in pcrs["sha256"].items():
        print(f"image: predicted PCR {pcr:>2} sha256 {value}")
    print("image: timings " + " ".join(f"{k}={v}s" for k, v in result.timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
