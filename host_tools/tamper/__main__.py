"""python -m host_tools.tamper --device NAME <what> [--resign yes|no]

Tamper with one emulated phone's flash (build/devices/NAME/disk.img), to see the measured boot
catch it (``make verify DEVICE=NAME``).  One of:

  --component NAME [--offset N]   change one byte of a component of the signed bundle
  --remove NAME                   drop a component
  --add NAME:FILE                 append a component with FILE's contents
  --swap A,B                      exchange two components (measured in the other order)
  --rollback                      an older release of the same bundle: lower bundle_version and
                                  anti-rollback counter, signed with the vendor key
  --uki initrd|cmdline [--offset N]   change one byte of the UKI's .initrd or .cmdline section
  --restore                       copy the built image to the flash again (undo everything)

``--resign yes`` (default) rewrites the manifest and signs it with the development key, as a
compromised build server would; ``--resign no`` leaves manifest and signature stale (the stage
loader then refuses to start the components).  A UKI signed for Secure Boot is re-signed with the
db key in ``--keys-dir`` by ``--resign yes`` (it boots; PCRs 4 and 11 change) and keeps its stale
signature with ``--resign no`` (OVMF refuses to start it).  Exit status 0 done, 2 bad request (unknown device,
component, offset) or a device that is running, 1 a tool failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from host_tools.image import bundle, secureboot
from host_tools.qemu.device import BOARD, REPO, Device, DeviceConfig, DeviceError
from host_tools.tamper import bundle_ops, flash, uki_edit
from host_tools.tamper.bundle_ops import TamperError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_KEY = REPO / "build" / "keys" / "dev-signing-key.pem"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host_tools.tamper",
                                description="Tamper with an emulated phone's flash copy.")
    p.add_argument("--device", required=True, metavar="NAME",
                   help="device whose flash (build/devices/NAME/disk.img) is changed")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--component", metavar="NAME", help="change one byte of this component")
    what.add_argument("--remove", metavar="NAME", help="remove this component")
    what.add_argument("--add", metavar="NAME:FILE", help="add a component NAME holding FILE")
    what.add_argument("--swap", metavar="A,B", help="exchange the order of two components")
    what.add_argument("--rollback", action="store_true",
                      help="replace the bundle by an older, vendor-signed release of it")
    what.add_argument("--uki", choices=sorted(uki_edit.SECTIONS),
                      help="change one byte of this UKI section on the ESP")
    what.add_argument("--restore", action="store_true",
                      help="reflash the device from the built image (undo all tampering)")
    p.add_argument("--offset", type=int, metavar="N",
                   help="byte to change (default: the component's last byte; the gzip MTIME "
                        "byte of .initrd; the last byte of .cmdline)")
    p.add_argument("--resign", choices=("yes", "no"), default="yes",
                   help="re-sign the manifest with the development key (default yes)")
    p.add_argument("--rollback-version", metavar="V",
                   help="bundle_version of the older release (default: the one before)")
    p.add_argument("--rollback-counter", type=int, metavar="N",
                   help="its anti-rollback counter (default: the current one minus 1)")
    p.add_argument("--signing-key", type=Path, default=DEFAULT_KEY, metavar="PEM",
                   help=f"Ed25519 key to re-sign with (default {DEFAULT_KEY.relative_to(REPO)})")
    p.add_argument("--keys-dir", type=Path, default=REPO / "build" / "keys", metavar="DIR",
                   help="where the Secure Boot db key is (secureboot-db.key/.pem) to re-sign a "
                        "signed UKI with (default build/keys)")
    p.add_argument("--create", action="store_true",
                   help="flash a new device from the built image first if it does not exist")
    p.add_argument("--board", default=BOARD)
    p.add_argument("--image-dir", type=Path, metavar="DIR",
                   help="built image directory (default build/<board>)")
    p.add_argument("--devices-dir", type=Path, metavar="DIR",
                   help="where device state lives (default build/devices)")
    return p


def _key(args: argparse.Namespace, b: bundle_ops.Bundle) -> Ed25519PrivateKey | None:
    if args.resign == "no":
        return None
    try:
        key = bundle.load_or_create_key(args.signing_key, create=False)
    except (bundle.BundleError, ValueError, OSError) as e:
        raise TamperError(f"cannot re-sign: {e}") from None
    if not b.signed_by(key):
        raise TamperError(
            f"the bundle on this flash is not signed by {args.signing_key} (or its signature is "
            "already stale): a bundle re-signed with it would be refused like an unsigned one. "
            "Use --restore first, or --signing-key with the key the image was built with")
    return key


def _component_op(args: argparse.Namespace, disk: Path) -> str:
    b, part = flash.read_bundle(disk)
    if args.rollback and args.resign == "no":
        raise TamperError("--rollback replays a genuinely signed older release: it always "
                          "re-signs (--resign no makes no sense here)")
    key = _key(args, b)
    if args.component is not None:
        new, note = bundle_ops.change_byte(b, args.component, args.offset, key)
    elif args.remove is not None:
        new, note = bundle_ops.remove(b, args.remove, key)
    elif args.add is not None:
        name, sep, path = args.add.partition(":")
        if not sep or not name or not path:
            raise TamperError(f"--add takes NAME:FILE, got {args.add!r}")
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise TamperError(f"--add: cannot read {path}: {e.strerror}") from None
        new, note = bundle_ops.add(b, name, data, key)
    elif args.swap is not None:
        names = args.swap.split(",")
        if len(names) != 2:
            raise TamperError(f"--swap takes two components A,B, got {args.swap!r}")
        new, note = bundle_ops.swap(b, names[0], names[1], key)
    else:
        assert key is not None
        new, note = bundle_ops.rollback(b, key, args.rollback_version, args.rollback_counter)
    flash.write_bundle(disk, part, new)
    if key is None:
        return note + "; manifest and signature left stale"
    return note + f"; manifest re-signed with {args.signing_key}"


def _uki_op(args: argparse.Namespace, disk: Path) -> str:
    off = flash.esp_offset(disk)
    path = uki_edit.esp_uki_path(args.board)
    old = uki_edit.read_uki(disk, off, path)
    signed = secureboot.is_signed(old)
    if args.resign == "no" and not signed:
        raise TamperError("the UKI is not signed on this board (no Secure Boot): --resign does "
                          "not apply to --uki")
    if signed and args.resign == "yes":
        # Secure Boot: a compromised build server signs with the vendor's db key (the boot then
        # starts, and PCRs 4/11 catch the change)
        db = secureboot.load_or_create_keys(args.keys_dir, create=False)["db"]
        new, note = uki_edit.change_section_byte(secureboot.strip_signature(old), args.uki,
                                                 args.offset)
        new = secureboot.sign_pe(new, db, secureboot.TAMPER_SIGNING_TIME)
        note += f"; UKI re-signed with the Secure Boot db key {db.key}"
    else:
        new, note = uki_edit.change_section_byte(old, args.uki, args.offset)
        if signed:  # OVMF with the vendor's keys refuses to start it
            note += "; Authenticode signature left stale (Secure Boot refuses the UKI)"
    uki_edit.write_uki(disk, off, new, path)
    return note


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.offset is not None and args.component is None and args.uki is None:
        print("tamper: error: --offset goes with --component or --uki", file=sys.stderr)
        return EXIT_USAGE
    try:
        device = Device(args.device, DeviceConfig(board=args.board, build_dir=args.image_dir,
                                                  devices_dir=args.devices_dir))
        with flash.edit(device, create=args.create or args.restore) as disk:
            if args.restore:
                device.prepare(reflash=True)
                note = f"flash restored from {device.image}"
            elif args.uki is not None:
                note = _uki_op(args, disk)
            else:
                note = _component_op(args, disk)
            flash.record(device, note)
    except (TamperError, DeviceError) as e:
        print(f"tamper: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"tamper: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"tamper: {device.name}: {note}")
    print(f"tamper: {device.name}: flash {disk}; now run `make verify DEVICE={device.name}`")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
