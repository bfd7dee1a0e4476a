"""``python -m host_tools.verify --quote``: attestation with a fresh nonce (issue 10 §2).

The host picks a random nonce (32 bytes from the OS), asks the phone's console ``quote
NONCE_HEX`` (a booted device: ``--console TARGET``; or ``--device NAME``, booted for it and powered
off after), and appraises the answer with firmware/attest/appraise.py against the device CA
certificate and the vendor-signed reference set. Unlike the log verifier it believes nothing the
console says about PCRs or logs: only what the TPM signed for this nonce, and the logs as far as
they replay to it. ``--evidence FILE --nonce HEX`` appraises saved evidence for the nonce that was
sent. Exit status: 0 only for ``verified``; 1 any other level; 2 bad input or usage; 3 no prompt.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, cast

from firmware.attest import appraise as _appraise
from firmware.attest import evidence as _evidence
from firmware.attest import trust as _trust
from host_tools.verify.html import render as render_html
from host_tools.verify.reference import InputError

REPO = Path(__file__).resolve().parents[2]
NONCE_BYTES = 32
QUOTE_TIMEOUT = 180.0
NO_AK = "no attestation key"  # the console's answer for a device provisioned without one

appraise = cast(Callable[..., Any], _appraise.appraise)
load_trust_bytes = cast(Callable[..., Any], _trust.load)
decode_evidence = cast(Callable[[bytes], dict[str, Any]], _evidence.decode)


class NoAttestationKey(InputError):
    """The device answered that it has no AK (provisioned without attestation, or not at all)."""


def fresh_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError("%s %s: cannot read: %s" % (what, path, e.strerror or e)) from None


def load_trust(image_dir: Path, references: Path | None = None, vendor_key: Path | None = None,
               device_ca: Path | None = None) -> Any:
    """trust.Trust from the image directory's references.json/.sig and vendor-pubkey.pem and the
    device CA certificate (default build/keys/device-ca.pem); InputError names a bad file."""
    ref = references or image_dir / _trust.REFERENCES_NAME
    sig = ref.with_name(_trust.SIGNATURE_NAME)
    key = vendor_key or image_dir / "vendor-pubkey.pem"
    ca = device_ca or REPO / "build" / "keys" / "device-ca.pem"
    try:
        return load_trust_bytes(_read(ref, "reference set"), _read(sig, "reference set signature"),
                                _read(key, "vendor key"), [_read(ca, "device CA").decode("ascii",
                                                                                        "replace")])
    except _trust.TrustError as e:
        raise InputError("%s: %s" % (ref, e)) from None


def ask_quote(con: Any, nonce: bytes) -> bytes:
    """The console's answer to ``quote NONCE_HEX`` (one JSON line), or NoAttestationKey/InputError."""
    answer = str(con.command("quote " + nonce.hex(), timeout=QUOTE_TIMEOUT)).strip()
    if answer.startswith("error:"):
        if NO_AK in answer:
            raise NoAttestationKey("the device has no attestation key: %s" % answer[:200])
        raise InputError("the device refused the quote: %s" % answer[:300])
    return answer.encode()


def judge(evidence: bytes | dict[str, Any] | None, nonce: bytes, trust: Any) -> dict[str, Any]:
    """Appraise at the current time (certificate validity); -> Judgement.to_dict()."""
    j = appraise(evidence, nonce, trust, now=time.time())
    out: dict[str, Any] = j.to_dict()
    return out


def format_text(j: dict[str, Any], device: str | None = None) -> str:
    lines = ["attestation%s: %s (image %s, board %s)" % (
        " of " + device if device else "", j["level"].upper(), j.get("image_version") or "?",
        j.get("board") or "?"), "  why: " + j["why"]]
    if j["differs"]:
        lines.append("  differs: " + ", ".join(j["differs"]))
    for c in j["checks"]:
        lines.append("  %-4s %-24s %s" % ("ok" if c["ok"] else "FAIL", c["name"], c["detail"]))
    bad = [r for r in j["pcrs"] if r["replayed"] != r["quoted"]
           or (r["expected"] is not None and r["expected"] != r["quoted"])]
    for r in bad:
        lines.append("  PCR %2d  replayed %s  quoted %s  expected %s" % (
            r["pcr"], (r["replayed"] or "-")[:16], (r["quoted"] or "-")[:16],
            (r["expected"] or "-")[:16]))
    for c in j["components"]:
        if c["status"] not in ("ok", "known"):
            lines.append("  %-12s %s %s (reference %s) sha256 %s (reference %s)" % (
                c["status"], c["name"], c.get("version") or "-", c.get("expected_version") or "-",
                (c.get("sha256") or "-")[:16], (c.get("expected_sha256") or "-")[:16]))
    return "\n".join(lines)


def output(j: dict[str, Any], as_json: bool, html_path: Path | None, device: str | None,
           nonce: bytes) -> str:
    if html_path is not None:
        try:
            html_path.write_text(render_html(j, device, nonce.hex()))
        except OSError as e:
            raise InputError("--html %s: cannot write: %s" % (html_path, e.strerror or e)) from None
    if as_json:
        return json.dumps(dict(j, nonce=nonce.hex()), indent=2, sort_keys=True)
    return format_text(j, device)


def read_evidence(path: Path) -> bytes:
    """Saved evidence; malformed evidence is judged (level failed, naming the field), not refused
    here as bad input."""
    return _read(path, "evidence").strip()
