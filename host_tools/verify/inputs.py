"""Reading the verifier's inputs: event logs, PCR values from a file's parse or a TPM, and the
--pcr-list / --banks selections. Shared by the single-device command line (cli.py) and fleet mode
(fleet.py); every problem is an InputError naming the file or option (exit status 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, cast

from host_tools.verify.core import NamedLog, PcrValues, parse_named
from host_tools.verify.reference import KNOWN_BANK_SIZES, InputError


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
    """The PCR values of the --banks selection; a selected bank that was not read is bad input."""
    if banks is None:
        return actual
    missing = banks - set(actual)
    if missing:
        raise InputError("%s: no %s PCR values" % (where, ", ".join(sorted(missing))))
    return {b: v for b, v in actual.items() if b in banks}
