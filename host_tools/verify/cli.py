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
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verbose", action="store_true", help="list every PCR, also matching ones")
    return p


def run(args: argparse.Namespace) -> tuple[int, str]:
    """Returns (exit status, output text); raises InputError on bad input."""
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
