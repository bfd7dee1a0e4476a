"""python -m host_tools.update --device NAME [--reference NEW.json] [--flash]
   python -m host_tools.update --policy-out FILE --installed REF.json --bundle-reference NEW.json

The second form writes the signed PCR policy of an SMP bundle update (the installed image's UKI
with the new bundle: host_tools/update/bundle_ref.py) to FILE, for `python -m host_tools.flash
--policy FILE`: no device store needed (host_tools/update/policy_file.py says why). The phone
checks it against its own store before adding it.

Signs the new image's PCR policy with the vendor policy key, proves on a copy of the device's
TPM that it unseals, and writes it into the device's sealed store. With --flash, also copies the
built image onto the device's flash first, keeping the data partition's store. Exit status 0:
shipped; 3: refused (nothing changed); 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from firmware.update import partition_flash
from host_tools.provision import _fw, disk, reference
from host_tools.update import core, policy_file, policy_key
from host_tools.update.bundle_ref import BundleRefError, bundle_update_reference

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.update", description=__doc__.split("\n")[0])
    ap.add_argument("--device")
    ap.add_argument("--policy-out", type=Path, help="write the signed policy file for an SMP update")
    ap.add_argument("--installed", type=Path, help="reference.json of the image the phones run")
    ap.add_argument("--bundle-reference", type=Path, help="reference.json of the new bundle's build")
    ap.add_argument("--nv-index", type=lambda s: int(s, 0), default=_fw.ROLLBACK_INDEX)
    ap.add_argument("--board", default="qemu-x86_64")
    ap.add_argument("--build-dir", type=Path)
    ap.add_argument("--devices-dir", type=Path)
    ap.add_argument("--reference", type=Path, help="default <build-dir>/reference.json")
    ap.add_argument("--policy-key", type=Path, help="default build/keys/policy-signing-key.pem")
    ap.add_argument("--flash", action="store_true", help="copy the built disk image to the device, keeping its store")
    args = ap.parse_args(argv)
    if args.policy_out is not None:
        return _policy_out(args)
    if not args.device:
        ap.error("--device is required (or --policy-out)")
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
            # the device's own disk: its A/B slot record stays (it may run bank b by now)
            disk.write_store(dev.disk, _fw.pack(new), keep_from=partition_flash.RECORD_OFFSET)
    except core.UpdateRefused as e:
        print(f"update REFUSED for {args.device}: {e}", file=sys.stderr)
        return 3
    finally:
        dev.unlock()
    print(f"update for {args.device}: image {ref.image_version} (anti-rollback {ref.anti_rollback}) "
          f"signed and proven to unseal on a copy of its TPM; store written"
          f"{' with the new image flashed' if args.flash else ''}")
    return 0


def _policy_out(args: argparse.Namespace) -> int:
    if args.installed is None or args.bundle_reference is None:
        print("update: --policy-out needs --installed and --bundle-reference", file=sys.stderr)
        return 2
    try:
        doc = bundle_update_reference(json.loads(args.installed.read_text()),
                                      json.loads(args.bundle_reference.read_text()))
        ref = reference.parse(doc, "bundle update reference")
        key = policy_key.load_or_create(args.policy_key or REPO / policy_key.DEFAULT_KEY, create=False)
        out = policy_file.build(ref, key, args.nv_index)
    except (BundleRefError, reference.ReferenceError, policy_key.PolicyKeyError, OSError, ValueError,
            KeyError) as e:
        print(f"update: {e}", file=sys.stderr)
        return 2
    args.policy_out.write_bytes(policy_file.dumps(out))
    print(f"signed PCR policy for {ref.image_version} (anti-rollback {ref.anti_rollback}, board "
          f"{ref.board}) written to {args.policy_out}; deliver it with python -m host_tools.flash "
          f"--policy {args.policy_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
