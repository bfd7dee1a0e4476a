"""python -m host_tools.update --device NAME [--reference NEW.json] [--flash]

Signs the new image's PCR policy with the vendor policy key, proves on a copy of the device's
TPM that it unseals, and writes it into the device's sealed store. With --flash, also copies the
built image onto the device's flash first, keeping the data partition's store. Exit status 0:
shipped; 3: refused (nothing changed); 2: bad input.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from host_tools.provision import _fw, disk, reference
from host_tools.update import core, policy_key

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.update", description=__doc__.split("\n")[0])
    ap.add_argument("--device", required=True)
    ap.add_argument("--board", default="qemu-x86_64")
    ap.add_argument("--build-dir", type=Path)
    ap.add_argument("--devices-dir", type=Path)
    ap.add_argument("--reference", type=Path, help="default <build-dir>/reference.json")
    ap.add_argument("--policy-key", type=Path, help="default build/keys/policy-signing-key.pem")
    ap.add_argument("--flash", action="store_true", help="copy the built disk image to the device, keeping its store")
    args = ap.parse_args(argv)
    from host_tools.qemu.device import Device, DeviceConfig
    dev = Device(args.device, DeviceConfig(board=args.board, build_dir=args.build_dir,
                                           devices_dir=args.devices_dir))
    try:
        ref = reference.load(args.reference or dev.build_dir / "reference.json")
        meta = _fw.unpack(disk.read_partition(dev.disk))
        if meta.get("policy") != _fw.POLICY_AUTHORIZED:
            print(f"update REFUSED for {args.device}: it is sealed with policy 'pcr' (to one image); "
                  "an update needs re-provisioning (provision with --policy authorized)", file=sys.stderr)
            return 3
        key = policy_key.load_or_create(args.policy_key or REPO / policy_key.DEFAULT_KEY, create=False)
    except (reference.ReferenceError, policy_key.PolicyKeyError, disk.DiskError, OSError, ValueError) as e:
        print(f"update: {e}", file=sys.stderr)
        return 2
    dev.lock()
    try:
        entry = core.make_entry(meta, ref, key)
        new = core.with_entry(meta, entry, ref)
        core.dry_run(dev.tpm_dir, new, ref)
        if args.flash:
            tmp = dev.disk.with_suffix(".update")
            shutil.copyfile(dev.image, tmp)
            disk.write_store(tmp, _fw.pack(new))
            tmp.replace(dev.disk)
        else:
            disk.write_store(dev.disk, _fw.pack(new))
    except core.UpdateRefused as e:
        print(f"update REFUSED for {args.device}: {e}", file=sys.stderr)
        return 3
    finally:
        dev.unlock()
    print(f"update for {args.device}: image {ref.image_version} (anti-rollback {ref.anti_rollback}) "
          f"signed and proven to unseal on a copy of its TPM; store written"
          f"{' with the new image flashed' if args.flash else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
