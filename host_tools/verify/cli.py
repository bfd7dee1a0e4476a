"""Command line of the measured-boot verifier: python -m host_tools.verify --help.

Exit status: 0 everything matches, 1 a mismatch, 2 bad input or usage (one line on stderr naming the
file and what is wrong; never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence, cast

from host_tools.verify.core import NamedLog, PcrValues, Report, parse_named, verify
from host_tools.verify.reference import (KNOWN_BANK_SIZES, InputError, Reference, load_pcrs,
                                         load_reference, restrict_banks)
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
                   help="compare only these PCR banks (e.g. sha256); default: every bank read")
    p.add_argument("--fleet", type=Path, metavar="DIR",
                   help="verify every device subdirectory of DIR (logs + pcrs.json), one line each")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verbose", action="store_true", help="list every PCR, also matching ones")
    return p


def read_log(path: Path) -> NamedLog:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    return parse_named(str(path), data)


def read_tpm_pcrs(uri: str) -> PcrValues:
    """PCRs 0-23 of every bank the TPM has allocated, read over `uri` (see
    firmware.tpm.transport.open_uri). Imported lazily: only this path needs the TPM client."""
    try:
        from firmware.tpm import client as _client
        from firmware.tpm import transport as _transport
    except ImportError as e:
        raise InputError("--tpm %s: the TPM client is not available (%s); use --pcrs" % (uri, e)) \
            from None
    open_uri = cast(Callable[[str], Any], _transport.open_uri)
    try:
        transport = open_uri(uri)
    except (OSError, ValueError) as e:
        raise InputError("--tpm %s: cannot open: %s" % (uri, e)) from None
    out: PcrValues = {}
    try:
        tpm = cast(Callable[[Any], Any], _client.Tpm)(transport)
        banks = tpm.pcr_banks()
        for bank in banks:
            if isinstance(bank, str) and bank in KNOWN_BANK_SIZES:
                out[bank] = {int(k): bytes(v) for k, v in tpm.pcr_read_all(bank).items()}
    except InputError:
        raise
    except Exception as e:  # TpmError, TransportError, ParseError: all mean "no trustworthy values"
        raise InputError("--tpm %s: reading PCRs failed: %s" % (uri, e)) from None
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
    if not out:
        raise InputError("--tpm %s: the TPM reports no PCR bank this verifier knows" % uri)
    return out


def parse_pcr_list(text: str | None) -> set[int] | None:
    if text is None:
        return None
    try:
        out = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise InputError("--pcr-list %r: not a comma-separated list of integers" % text) from None
    if not out or not all(0 <= x <= 23 for x in out):
        raise InputError("--pcr-list %r: PCR indices must be 0..23" % text)
    return out


def parse_banks(text: str | None) -> set[str] | None:
    if text is None:
        return None
    out = {b.strip() for b in text.split(",") if b.strip()}
    unknown = out - set(KNOWN_BANK_SIZES)
    if not out or unknown:
        raise InputError("--banks %r: known banks are %s" % (text, ", ".join(KNOWN_BANK_SIZES)))
    return out


def select_banks(actual: PcrValues, banks: set[str] | None, where: str) -> PcrValues:
    if banks is None:
        return actual
    missing = banks - set(actual)
    if missing:
        raise InputError("%s: no %s PCR values" % (where, ", ".join(sorted(missing))))
    return {b: v for b, v in actual.items() if b in banks}


def run(args: argparse.Namespace) -> tuple[int, str]:
    """Returns (exit status, output text); raises InputError on bad input."""
    only = parse_pcr_list(args.pcr_list)
    banks = parse_banks(args.banks)
    reference: Reference | None = None
    if args.reference is not None:
        reference = restrict_banks(load_reference(args.reference), banks)
    if args.fleet is not None:
        from host_tools.verify.fleet import verify_fleet

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
    report = verify(logs, actual, reference, only)
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
