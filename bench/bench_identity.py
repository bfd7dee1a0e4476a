# mypy: disable-error-code="no-untyped-call"
"""Device identity and quote benchmark (docs/BENCHMARKS.md, section "Device identity").

On the host, with real swtpm processes: manufacturing a TPM with EK certificates (swtpm_setup),
the whole enrollment (EK certificate chain, AK creation + EvictControl, host MakeCredential,
ActivateCredential, AK certificate), the device's quote (firmware/attest/quote.py: ReadPublic,
TPM2_Quote of 13 sha256 PCRs, PCR_Read) and evidence encode/decode of a realistic size. Prints
one JSON line with the numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from firmware.attest import evidence, pem
from firmware.attest import quote as attest_quote
from firmware.tpm import constants as C
from host_tools.provision import _fw, device_ca, identity, manufacturer
from host_tools.swtpm_proc import Swtpm

ROUNDS = 5


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 2), "min_ms": round(min(samples) * 1000, 2)}


def main() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as d:
        root = Path(d)
        keys = root / "keys"
        t = []
        for i in range(3):
            t0 = time.monotonic()
            manufacturer.manufacture(root / f"tpm{i}", keys)
            t.append(time.monotonic() - t0)
        out["manufacture"] = _ms(t)
        roots, inter = manufacturer.known_cas(keys)
        ca = device_ca.load_or_create(keys)
        with Swtpm(root / "tpm0", root, server=True, tcp=True, extra_args=["--flags", "not-need-init"]) as sw:
            tpm = _fw.Tpm(_fw.SwtpmTransport("127.0.0.1", sw.server_port))
            tpm.startup(clear=True)
            eauth = os.urandom(32)
            tpm.hierarchy_change_auth(C.TPM_RH_ENDORSEMENT, eauth)
            srk = tpm.create_primary(C.TPM_RH_OWNER, _fw.srk_template_ecc())
            t = []
            rec: dict[str, Any] = {}
            for _ in range(ROUNDS * 4):
                t0 = time.monotonic()
                rec = identity.enroll(tpm, "bench", srk["handle"], srk["parsed"], b"", eauth, ca, roots, inter)
                t.append(time.monotonic() - t0)
            out["enroll"] = _ms(t)
            t = []
            ans: dict[str, Any] = {}
            for _ in range(ROUNDS * 20):
                nonce = os.urandom(32)
                t0 = time.monotonic()
                ans = attest_quote.quote(tpm, rec, nonce)
                t.append(time.monotonic() - t0)
            out["device_quote_swtpm"] = _ms(t)
            tpm.shutdown(clear=True)
        ev = {"version": 1, "nonce": nonce.hex(), "board": "qemu-x86_64", "image_version": "0.1.0",
              "logs": {"firmware": pem.b64encode(os.urandom(14000)), "phone": pem.b64encode(os.urandom(600))}}
        ev.update({k: ans[k] for k in ("quote", "signature", "ak_pub", "ak_cert", "pcr_bank", "pcrs")})
        data = evidence.encode(ev)
        n = 300
        t0 = time.monotonic()
        for _ in range(n):
            evidence.decode(data)
        out["evidence_decode_per_s"] = round(n / (time.monotonic() - t0), 1)
        out["evidence_bytes_14k_firmware_log"] = len(data)
    print(json.dumps(out, sort_keys=True))
    return out


if __name__ == "__main__":
    main()
