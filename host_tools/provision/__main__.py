"""python -m host_tools.provision --device NAME [--board qemu-x86_64] [options]

Starts the device's swtpm (its state under build/devices/NAME/tpm), provisions it (core.py),
enrolls its attestation key (identity.py: EK certificate checked against the manufacturer CA,
MakeCredential/ActivateCredential, AK certificate from the device CA build/keys/device-ca.pem),
sets random owner/endorsement/lockout authorizations kept only in
build/devices/NAME/provisioning-record.json (hierarchy.py; re-provisioning needs that record),
shuts the TPM down in order (an unclean stop could count as a failed PIN guess), and writes the
sealed store into the data partition of the device's flash copy (build/devices/NAME/disk.img).
Prints what it did; never a secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from host_tools.provision import _fw, core, device_ca, disk, hierarchy, identity, inputs, manufacturer, reference
from host_tools.swtpm_proc import Swtpm

REPO = Path(__file__).resolve().parents[2]


def board_da(board_dir: Path) -> core.DaParameters:
    """DA parameters from board.json's optional "dictionary_attack" object, else 5 tries and 600 s."""
    da = core.DaParameters()
    try:
        cfg = json.loads((board_dir / "board.json").read_text())
    except (OSError, ValueError):
        return da
    d = cfg.get("dictionary_attack", {}) if isinstance(cfg, dict) else {}
    if isinstance(d, dict):
        for key, attr in (("max_tries", "max_tries"), ("recovery_time_s", "recovery_time"),
                          ("lockout_recovery_s", "lockout_recovery")):
            if isinstance(d.get(key), int):
                setattr(da, attr, d[key])
    return da


def _read_pin(args: argparse.Namespace) -> bytes | None:
    if args.pin_file:
        pin = Path(args.pin_file).read_bytes().strip()
    elif args.pin:
        pin = args.pin.encode()
    else:
        return None
    if not pin.isdigit() or not 4 <= len(pin) <= 16:
        raise core.ProvisionError("the PIN must be 4..16 digits")
    return pin


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.provision", description=__doc__.split("\n")[0])
    ap.add_argument("--device", required=True, help="device name (build/devices/NAME)")
    ap.add_argument("--board", default="qemu-x86_64")
    ap.add_argument("--build-dir", type=Path, help="default build/<board>")
    ap.add_argument("--devices-dir", type=Path, help="default build/devices")
    ap.add_argument("--reference", type=Path, help="default <build-dir>/reference.json")
    ap.add_argument("--secrets", type=Path, help="provisioning input file (JSON); default: generate")
    ap.add_argument("--pin", help="user PIN (visible in the process list: prefer --pin-file)")
    ap.add_argument("--pin-file", help="file holding the user PIN")
    ap.add_argument("--policy", choices=[_fw.POLICY_PCR, _fw.POLICY_AUTHORIZED], default=_fw.POLICY_AUTHORIZED,
                    help="pcr: PolicyPCR to this image; authorized: PolicyAuthorize to the vendor "
                         "policy key (updates without re-provisioning; default)")
    ap.add_argument("--policy-key", type=Path, help="default build/keys/policy-signing-key.pem (created if missing)")
    ap.add_argument("--nv-index", type=lambda s: int(s, 0), default=_fw.ROLLBACK_INDEX)
    ap.add_argument("--max-tries", type=int)
    ap.add_argument("--recovery-time", type=int, help="seconds")
    ap.add_argument("--reflash", action="store_true", help="copy the built image to the device first")
    ap.add_argument("--keys-dir", type=Path, help="manufacturer CA and device CA (default build/keys)")
    ap.add_argument("--manufacturer-ca", type=Path, action="append", default=[], metavar="PEM",
                    help="another TPM manufacturer's CA certificates (its root and any intermediates, "
                         "PEM) to accept EK certificates from (repeatable; the project's own is "
                         "build/keys/manufacturer-ca)")
    ap.add_argument("--no-attestation", action="store_true",
                    help="do not enroll an attestation key (a TPM without an EK certificate)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except (core.ProvisionError, reference.ReferenceError, disk.DiskError, hierarchy.RecordError,
            identity.IdentityError, OSError) as e:
        print(f"provision: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from host_tools.qemu.device import Device, DeviceConfig
    from host_tools.update import policy_key

    cfg = DeviceConfig(board=args.board, build_dir=args.build_dir, devices_dir=args.devices_dir)
    dev = Device(args.device, cfg)
    ref_path = args.reference or dev.build_dir / "reference.json"
    ref = reference.load(ref_path)
    if ref.board != args.board:
        raise core.ProvisionError(f"{ref_path} is for board {ref.board}, not {args.board}")
    pin = _read_pin(args)
    secrets = inputs.read(args.secrets) if args.secrets else inputs.generate(args.device)
    if core.USER_SECRET in secrets and pin is None:
        if args.secrets:
            raise core.ProvisionError("a user secret is sealed to a PIN: give --pin-file or --pin")
        del secrets[core.USER_SECRET]  # generated and no PIN: seal the SIP account alone
        print("no PIN given: no user secret sealed (give --pin-file to seal one)")
    da = board_da(REPO / "board" / args.board)
    if args.max_tries is not None:
        da.max_tries = args.max_tries
    if args.recovery_time is not None:
        da.recovery_time = args.recovery_time
    key = None
    if args.policy == _fw.POLICY_AUTHORIZED:
        key = policy_key.load_or_create(args.policy_key or REPO / policy_key.DEFAULT_KEY)
    for note in dev.prepare(reflash=args.reflash):
        print(note)
    enroll = None
    if not args.no_attestation:
        keys_dir = args.keys_dir or REPO / "build" / "keys"
        roots, intermediates = manufacturer.known_cas(keys_dir)
        for pem_path in args.manufacturer_ca:
            try:
                for c in manufacturer.load_certs(pem_path):  # self-signed: a root; else an intermediate
                    (roots if c.issuer == c.subject else intermediates).append(c)
            except ValueError as e:
                raise core.ProvisionError(f"--manufacturer-ca {pem_path}: not PEM certificates ({e})") from None
        ca = device_ca.load_or_create(keys_dir)

        def enroll(tpm: _fw.TpmClient, srk: int, auth: hierarchy.HierarchyAuth) -> dict[str, object]:
            return identity.enroll(tpm, args.device, srk, None, auth.owner, auth.endorsement, ca,
                                   roots, intermediates)
    record_path = hierarchy.record_path(dev.dir)
    record = hierarchy.read_record(record_path)
    dev.lock()
    try:
        with Swtpm(dev.tpm_dir, dev.dir, server=True, tcp=True,
                   extra_args=["--flags", "not-need-init"]) as sw:
            assert sw.server_port is not None
            t = _fw.SwtpmTransport("127.0.0.1", sw.server_port)
            tpm = _fw.Tpm(t)
            try:
                tpm.startup(clear=True)
                current = hierarchy.current_auth(tpm, record, record_path)
                if record is None:  # the record exists before the TPM holds its values
                    record = hierarchy.HierarchyAuth.generate()
                    hierarchy.write_record(record_path, args.device, record)
                    print(f"new TPM authorizations in {record_path} (mode 0600; keep it: "
                          "re-provisioning needs it)")
                meta = core.provision(tpm, ref, secrets, pin, mode=args.policy, key=key, da=da,
                                      auth=current, enroll=enroll)
                hierarchy.change_auth(tpm, current, record)
                tpm.shutdown(clear=True)  # orderly: the next power-on must not count a DA failure
            finally:
                t.close()
        blob = _fw.pack(meta)
        offset, size = disk.write_store(dev.disk, blob)
    finally:
        dev.unlock()
        for k in list(secrets):
            secrets[k] = b""
    print(f"provisioned {args.device}: {', '.join(o['name'] for o in meta['objects'])} sealed "
          f"({args.policy} policy, PCRs {','.join(map(str, ref.pcrs))} of image {ref.image_version}); "
          f"DA {da.max_tries} tries / {da.recovery_time} s; store {len(blob)} bytes at offset "
          f"{offset} of {dev.disk}")
    if "attestation" in meta:
        print(f"attestation key 0x{meta['attestation']['ak_handle']:08x} certified by the device CA "
              f"(EK certificate chains to the manufacturer CA; ActivateCredential succeeded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
