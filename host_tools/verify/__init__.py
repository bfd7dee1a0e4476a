"""Measured-boot log verifier: replay TCG event logs against PCR values, then compare with the
image's reference.json. `python -m host_tools.verify --help`; the library API is `verify()`."""

from host_tools.verify.core import NamedLog, Report, parse_named, verify, verify_bytes
from host_tools.verify.reference import InputError, Reference, load_pcrs, load_reference

__all__ = ["InputError", "NamedLog", "Reference", "Report", "load_pcrs", "load_reference",
           "parse_named", "verify", "verify_bytes"]
