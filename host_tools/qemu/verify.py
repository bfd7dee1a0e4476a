"""``make verify DEVICE=NAME``: boot the device, fetch its logs and PCRs over the console, verify.

    python -m host_tools.qemu.verify --device NAME [--reference build/qemu-x86_64/reference.json]

Writes ``build/devices/NAME/verify/{firmware.bin,phone.bin,pcrs.json,status.json}`` (what the
phone said, byte-exact: each log's size and SHA-256 are checked against its frame header), powers
the phone off, then runs ``python -m host_tools.verify --log firmware.bin --log phone.bin --pcrs
pcrs.json --reference ...`` and exits with its status (0 only when everything matches).
Extra arguments after ``--`` go to the verifier (e.g. ``-- --json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from host_tools.console import Console, ConsoleError, ConsoleTimeout
from host_tools.qemu.device import BOARD, REPO, Device, DeviceConfig, DeviceError
from host_tools.verify import quote
from host_tools.verify.reference import InputError

EXIT_NO_PROMPT, EXIT_USAGE = 3, 2


@dataclass(frozen=True)
class Evidence:
    firmware_log: Path
    phone_log: Path
    pcrs: Path
    status: Path


def fetch_evidence(con: Console, out: Path) -> Evidence:
    """Save what the verifier needs from a booted phone into *out*."""
    out.mkdir(parents=True, exist_ok=True)
    ev = Evidence(out / "firmware.bin", out / "phone.bin", out / "pcrs.json", out / "status.json")
    logs = con.logs()
    ev.firmware_log.write_bytes(logs["firmware"])
    ev.phone_log.write_bytes(logs["phone"])
    ev.pcrs.write_text(json.dumps(con.pcrs("sha256"), indent=1, sort_keys=True) + "\n")
    ev.status.write_text(json.dumps(con.status(), indent=1, sort_keys=True) + "\n")
    return ev


# The Debian kernel has IMA built in: it extends its boot_aggregate into PCR 10 and records it in
# the IMA runtime list (/sys/kernel/security/ima/), not in a TCG event log, so no log given here
# explains PCR 10. Every other PCR is checked; a --pcr-list after "--" overrides this.
IMA_PCR = 10
DEFAULT_PCRS = ",".join(str(i) for i in range(24) if i != IMA_PCR)


def verifier_command(ev: Evidence, reference: Path, extra: list[str]) -> list[str]:
    pcrs = [] if "--pcr-list" in extra else ["--pcr-list", DEFAULT_PCRS]
    return [sys.executable, "-m", "host_tools.verify", "--log", str(ev.firmware_log),
            "--log", str(ev.phone_log), "--pcrs", str(ev.pcrs), "--reference", str(reference),
            *pcrs, *extra]


def has_attestation_key(device: Device) -> bool:
    """The device's store (data partition of its flash) holds an "attestation" record."""
    from firmware.secrets import store
    from host_tools.provision import disk

    if not device.disk.is_file():
        return False
    try:
        meta = store.unpack(disk.read_partition(device.disk))  # type: ignore[no-untyped-call]
    except (ValueError, OSError, disk.DiskError):
        return False  # blank or unreadable store: not provisioned (the boot will say more)
    return isinstance(meta, dict) and "attestation" in meta


def _appraise(name: str, attested: bytes, nonce: bytes, trust: object, out: Path,
              extra: list[str]) -> int:
    """The quote path's verdict; `extra` may hold --json and --html FILE."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "evidence.json").write_bytes(attested + b"\n")
    (out / "nonce.txt").write_text(nonce.hex() + "\n")
    html = Path(extra[extra.index("--html") + 1]) if "--html" in extra[:-1] else None
    j = quote.judge(attested, nonce, trust)
    try:
        print(quote.output(j, "--json" in extra, html, name, nonce))
    except InputError as e:
        print(f"verify: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"verify: evidence from {name} in {out}/evidence.json (nonce {out}/nonce.txt)",
          file=sys.stderr)
    return 0 if j["level"] == "verified" else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m host_tools.qemu.verify",
                                description="Boot a device, fetch logs and PCRs, verify them.")
    p.add_argument("--device", required=True, metavar="NAME")
    p.add_argument("--board", default=BOARD)
    p.add_argument("--image-dir", type=Path, metavar="DIR")
    p.add_argument("--devices-dir", type=Path, metavar="DIR")
    p.add_argument("--reference", type=Path, metavar="FILE",
                   help="reference.json (default: <image dir>/reference.json)")
    p.add_argument("--timeout", type=float, default=240.0)
    args = p.parse_args(argv)
    device = Device(args.device, DeviceConfig(board=args.board, build_dir=args.image_dir,
                                              devices_dir=args.devices_dir))
    reference = args.reference or device.build_dir / "reference.json"
    if not reference.is_file():
        print(f"verify: error: no reference {reference}: run `make image` first",
              file=sys.stderr)
        return EXIT_USAGE
    # Attestation when the device has an attestation key and the image a signed reference set:
    # a fresh nonce, the TPM's quote, appraised (host_tools/verify/quote.py). Otherwise the log
    # verifier below, which believes the PCR values the console prints.
    # Whether the device has an AK is read from its flash before the boot, never asked of the
    # phone (a compromised phone would say "no key" to get the log verifier); once it has one, a
    # quote that fails is a failure, not a reason to believe the console instead.
    trust = None
    if has_attestation_key(device):
        try:
            trust = quote.load_trust(device.build_dir)
        except InputError as e:
            print(f"verify: error: {e}", file=sys.stderr)
            return EXIT_USAGE
    else:
        print(f"verify: {device.name} has no attestation key in its store: checking the logs and "
              "PCR values its console reports (a compromised phone can forge them)",
              file=sys.stderr)
    nonce = quote.fresh_nonce()
    attested: bytes | None = None
    try:
        with device.boot(timeout=args.timeout) as con:
            if trust is not None:
                try:
                    attested = quote.ask_quote(con, nonce)
                except InputError as e:
                    print(f"attestation of {device.name}: FAILED: {e}")
                    return 1
            if attested is None:
                ev = fetch_evidence(con, device.dir / "verify")
    except ConsoleTimeout as e:
        print(f"verify: error: {e} (console log: {device.console_log})", file=sys.stderr)
        return EXIT_NO_PROMPT
    except (DeviceError, ConsoleError, OSError) as e:
        print(f"verify: error: {e}", file=sys.stderr)
        return 1
    if attested is not None:
        return _appraise(device.name, attested, nonce, trust, device.dir / "verify", extra)
    print(f"verify: evidence from {device.name} in {ev.firmware_log.parent}", file=sys.stderr)
    return subprocess.run(verifier_command(ev, reference, extra), cwd=REPO,
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
