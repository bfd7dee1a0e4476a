"""Command line of the measured-boot verifier: python -m host_tools.verify --help.

Exit status: 0 everything matches; 1 a mismatch, or something unverified (e.g. a reference digest
in a bank whose replay was not checked against the TPM); 2 bad input or usage (one line on stderr
naming the file and what is wrong; never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from host_tools.verify.core import Report, verify
from host_tools.verify.fleet import verify_fleet
from host_tools.verify.inputs import (parse_banks, parse_pcr_list, read_log, read_tpm_pcrs,
                                      select_banks)
from host_tools.verify.reference import InputError, Reference, load_pcrs, load_reference
from host_tools.verify.report import render

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, "%s: usage error: %s (see --help)\n" % (self.prog, message))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m host_tools.verify",
                description="Replay measured-boot event logs against PCR values and compare with "
                            "an image's reference.json.")
    p.add_argument("--log", action="append", type=Path, default=[], metavar="FILE",
                   help="a TCG crypto-agile event log (repeat: firmware log, phone log)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pcrs", type=Path, metavar="FILE",
                     help='PCR values as JSON {"sha256": {"0": "hex", ...}}')
    src.add_argument("--tpm", metavar="URI", help="read PCRs from a TPM (e.g. swtpm:host:port)")
    p.add_argument("--reference", type=Path, metavar="FILE", help="reference.json of the image")
    p.add_argument("--pcr-list", metavar="LIST",
                   help="compare only these PCRs (comma-separated); default: all given")
    p.add_argument("--banks", metavar="LIST",
                   help="compare only these PCR banks (e.g. sha256); default: every bank read. "
                        "A reference digest in a bank left out is unverified, never ok")
    p.add_argument("--fleet", type=Path, metavar="DIR",
                   help="verify every device subdirectory of DIR (logs + pcrs.json), one line "
                        "each, against --reference")
    q = p.add_argument_group("attestation (--quote): a fresh nonce, the TPM's signed quote, "
                                 "appraised against the vendor-signed reference set")
    q.add_argument("--quote", action="store_true",
                   help="ask the device for a quote over a fresh nonce and appraise it; exit 0 "
                        "only for level verified")
    qsrc = q.add_mutually_exclusive_group()
    qsrc.add_argument("--console", metavar="TARGET",
                      help="console of a booted device (serial URL, pty path, socket://host:port)")
    qsrc.add_argument("--device", metavar="NAME", help="boot this device for the quote, then "
                      "power it off")
    qsrc.add_argument("--evidence", type=Path, metavar="FILE",
                      help="saved evidence (one JSON line) to appraise for --nonce")
    q.add_argument("--nonce", metavar="HEX", help="with --evidence: the nonce that was sent")
    q.add_argument("--image-dir", type=Path, metavar="DIR",
                   help="the image's build directory: references.json(+.sig), vendor-pubkey.pem "
                        "(default build/<board>)")
    q.add_argument("--board", default="qemu-x86_64")
    q.add_argument("--references", type=Path, metavar="FILE",
                   help="vendor-signed reference set (its signature: references.sig beside it)")
    q.add_argument("--vendor-key", type=Path, metavar="FILE", help="vendor public key (PEM)")
    q.add_argument("--device-ca", type=Path, metavar="FILE",
                   help="device CA certificate (default build/keys/device-ca.pem)")
    q.add_argument("--html", type=Path, metavar="FILE",
                   help="also write a self-contained HTML report of the appraisal")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verbose", action="store_true", help="list every PCR, also matching ones")
    return p


def run(args: argparse.Namespace) -> tuple[int, str]:
    """Returns (exit status, output text); raises InputError on bad input."""
    if args.quote:
        return run_quote(args)
    for flag in ("console", "device", "evidence", "nonce", "html"):
        if getattr(args, flag) is not None:
            raise InputError("--%s goes with --quote" % flag)
    only = parse_pcr_list(args.pcr_list)
    banks = parse_banks(args.banks)
    reference: Reference | None = None
    if args.reference is not None:
        reference = load_reference(args.reference)
    if args.fleet is not None:
        if args.log or args.pcrs or args.tpm:
            raise InputError("--fleet reads logs and pcrs.json from each device directory; "
                             "do not combine it with --log/--pcrs/--tpm")
        return verify_fleet(args.fleet, reference, only, args.json, banks)
    if not args.log:
        raise InputError("give at least one --log FILE (or --fleet DIR)")
    if args.pcrs is None and args.tpm is None:
        raise InputError("give the PCR values: --pcrs FILE or --tpm URI")
    # Parse every input before any verification step: bad input must not yield a partial verdict.
    logs = [read_log(p) for p in args.log]
    names = [nl.name for nl in logs]
    if len(set(names)) != len(names):
        raise InputError("the same --log file given twice")
    actual = load_pcrs(args.pcrs) if args.pcrs is not None else read_tpm_pcrs(args.tpm)
    actual = select_banks(actual, banks, str(args.pcrs or args.tpm))
    report = verify(logs, actual, reference, only, banks)
    return (EXIT_OK if report.ok else EXIT_MISMATCH), format_report(report, args.json,
                                                                   args.verbose)


def run_quote(args: argparse.Namespace) -> tuple[int, str]:
    from host_tools.verify import quote

    if args.log or args.pcrs or args.tpm or args.fleet or args.reference:
        raise InputError("--quote takes PCRs and logs from the TPM's quote only; do not combine "
                         "it with --log/--pcrs/--tpm/--fleet/--reference")
    image_dir = args.image_dir or quote.REPO / "build" / args.board
    trust = quote.load_trust(image_dir, args.references, args.vendor_key, args.device_ca)
    if args.evidence is not None:
        if args.nonce is None:
            raise InputError("--evidence needs --nonce HEX (the nonce that was sent)")
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError:
            raise InputError("--nonce %r is not hex" % args.nonce[:80]) from None
        ev = quote.read_evidence(args.evidence)
        name = None
    else:
        if args.nonce is not None:
            raise InputError("--nonce goes with --evidence (a live quote gets a fresh nonce)")
        nonce = quote.fresh_nonce()
        if args.console is not None:
            from host_tools.console import Console
            with Console.open(args.console) as con:
                ev = quote.ask_quote(con, nonce)
            name = args.console
        elif args.device is not None:
            from host_tools.qemu.device import Device, DeviceConfig
            device = Device(args.device, DeviceConfig(board=args.board, build_dir=args.image_dir))
            from host_tools.console import ConsoleError
            from host_tools.qemu.device import DeviceError
            try:
                with device.boot() as con:
                    ev = quote.ask_quote(con, nonce)
            except (ConsoleError, DeviceError, OSError) as e:
                raise InputError("device %s: %s" % (args.device, e)) from None
            name = args.device
        else:
            raise InputError("--quote needs --console TARGET, --device NAME or --evidence FILE")
    j = quote.judge(ev, nonce, trust)
    text = quote.output(j, args.json, args.html, name, nonce)
    return (EXIT_OK if j["level"] == "verified" else EXIT_MISMATCH), text


def format_report(report: Report, as_json: bool, verbose: bool = False) -> str:
    if as_json:
        return json.dumps(report.to_json(), indent=2, sort_keys=True)
    return render(report, verbose)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status, text = run(args)
    except InputError as e:
        sys.stderr.write("verify: error: %s\n" % str(e).replace("\n", " "))
        return EXIT_USAGE
    sys.stdout.write(text + "\n")
    return status
