"""Appraisal benchmark (docs/BENCHMARKS.md, section "Verifier", (c)): evidence appraisals per second
in one process (one core) on the host: firmware.attest.appraise.appraise() = decode + form checks,
AK certificate chain (X.509, ECDSA P-256), quote signature (ECDSA P-256), nonce, PCR digest, both
logs parsed and replayed against the quoted PCRs, comparison with the vendor-signed reference set.
Input: tests/data/attest (a real swtpm quote over the captured OVMF log + a phone log, see its
README); the trust (reference-set signature check) is loaded once, as a verifier keeps it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, cast

from firmware.attest import appraise as _appraise
from firmware.attest import trust as _trust

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "attest"
appraise = cast(Callable[..., Any], _appraise.appraise)
load = cast(Callable[..., Any], _trust.load)


def rate(fn: Callable[[], object], seconds: float = 1.0, rounds: int = 5) -> float:
    best = 0.0
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> dict[str, float]:
    read = lambda name: (DATA / name).read_bytes()  # noqa: E731
    trust = load(read("references.json"), read("references.sig"), read("vendor-pubkey.pem"),
                 [read("device-ca.pem").decode()])
    evidence = read("evidence.json").strip()
    nonce = bytes.fromhex(read("nonce.hex").decode().strip())
    j = appraise(evidence, nonce, trust, time.time())
    if j.level != "verified":
        raise RuntimeError("captured evidence is %s: %s" % (j.level, j.why))
    per_s = rate(lambda: appraise(evidence, nonce, trust, time.time()))
    memo = _appraise.Memo()  # a phone's RemoteJudge: the peer's AK chain and logs seen before
    memo_s = rate(lambda: appraise(evidence, nonce, trust, time.time(), memo=memo))
    trust_s = rate(lambda: load(read("references.json"), read("references.sig"),
                                read("vendor-pubkey.pem"), [read("device-ca.pem").decode()]))
    print("appraisals/s (one core): %.0f (%.2f ms each); evidence %d bytes" % (
        per_s, 1000 / per_s, len(evidence)))
    print("appraisals/s with a memo of the peer (its chain and logs seen before): %.0f (%.2f ms each)"
          % (memo_s, 1000 / memo_s))
    print("reference set load + Ed25519 check: %.0f/s" % trust_s)
    return {"appraisals_per_s": per_s, "memo_appraisals_per_s": memo_s, "evidence_bytes": float(len(evidence)),
            "trust_loads_per_s": trust_s}


if __name__ == "__main__":
    main()
