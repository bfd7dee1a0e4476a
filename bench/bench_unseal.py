# mypy: disable-error-code="no-untyped-call"
"""Unseal benchmark (docs/BENCHMARKS.md, section "Unseal").

The full salted policy unseal of the design, on ONE swtpm in one run, with our client
(firmware.tpm) and with tpm2-pytss (ESAPI over libtss2, the oracle), alternating rounds so both
see the same machine load:

    StartAuthSession(policy, salted with the ECC P-256 SRK, AES-128-CFB) + PolicyPCR(sha256:4,7,11,12,14)
    + PolicyAuthValue + Unseal (PIN in the HMAC key, response encrypted) + FlushContext

The SRK and the sealed object are loaded once beforehand (as at boot, both are loaded once).
Also times our whole boot release (firmware.secrets.release: CreatePrimary SRK, Load, the flow
above, flushes). Target: ours <= 1.5x tpm2-pytss. Prints one JSON line with the numbers.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, cast

from firmware.secrets import release as _release
from firmware.tpm import client as _client
from firmware.tpm import constants as C
from firmware.tpm import policy as _policy
from firmware.tpm import public as _public
from firmware.tpm import transport_swtpm as _swtpm
from firmware.tpm.marshal import Writer

# the qemu board's sealing policy (board.json pcr_policy: 4, 7, 11, 12 and its component register)
PCRS = json.loads((Path(__file__).resolve().parents[1] / "board" / "qemu-x86_64" / "board.json")
                  .read_text())["pcr_policy"]
PIN = b"482916"
SECRET = b"sip-account: bench secret"
ROUNDS = 5
PER_ROUND = 40
Tpm = cast(Callable[[Any], Any], _client.Tpm)
SwtpmTransport = cast(Callable[..., Any], _swtpm.SwtpmTransport)


def _free_pair() -> int:
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p: int = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue


def _start_swtpm(state: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_pair()
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                             "--flags", "not-need-init,startup-clear"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("swtpm did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _ours(port: int, srk: int, obj: int, n: int) -> list[float]:
    tpm = Tpm(SwtpmTransport("127.0.0.1", port))
    sel = _policy.pcr_selection("sha256", PCRS)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            s = tpm.start_auth_session(C.TPM_SE_POLICY, salt_key=srk, symmetric=_client.AES128_CFB,
                                       attributes=C.TPMA_SESSION_ENCRYPT)
            tpm.policy_pcr(s, sel)
            tpm.policy_auth_value(s)
            got = tpm.unseal(obj, s, PIN)
            tpm.flush_context(s.handle)
            out.append(time.perf_counter() - t0)
            if got != SECRET:
                raise RuntimeError("our unseal returned the wrong secret")
    finally:
        tpm.transport.close()
    return out


def _pytss(port: int, srk: int, obj: int, n: int) -> list[float]:
    from tpm2_pytss import ESAPI, TCTILdr
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_SESSION
    from tpm2_pytss.types import TPM2B_DIGEST, TPML_PCR_SELECTION, TPMT_SYM_DEF

    ectx = ESAPI(TCTILdr("swtpm", f"host=127.0.0.1,port={port}"))
    out = []
    try:
        srk_tr = ectx.tr_from_tpmpublic(srk)
        obj_tr = ectx.tr_from_tpmpublic(obj)
        sym = TPMT_SYM_DEF(algorithm=TPM2_ALG.AES)
        sym.keyBits.aes = 128
        sym.mode.aes = TPM2_ALG.CFB
        sel = TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, PCRS)))
        for _ in range(n):
            t0 = time.perf_counter()
            s = ectx.start_auth_session(srk_tr, ESYS_TR.NONE, TPM2_SE.POLICY, sym, TPM2_ALG.SHA256)
            ectx.trsess_set_attributes(s, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
            ectx.policy_pcr(s, TPM2B_DIGEST(), sel)
            ectx.policy_auth_value(s)
            ectx.tr_set_auth(obj_tr, PIN)
            got = bytes(ectx.unseal(obj_tr, session1=s))
            ectx.flush_context(s)
            out.append(time.perf_counter() - t0)
            if got != SECRET:
                raise RuntimeError("tpm2-pytss unseal returned the wrong secret")
    finally:
        ectx.close()
    return out


def _setup(port: int) -> tuple[int, int, dict[str, Any]]:
    tpm = Tpm(SwtpmTransport("127.0.0.1", port))
    try:
        srk = tpm.create_primary(C.TPM_RH_OWNER, _public.srk_template_ecc())["handle"]
        expected = tpm.pcr_read_all("sha256", PCRS)
        pol = _policy.seal_policy(expected, with_pin=True)
        blob = tpm.create(srk, _public.sealed_template(pol), SECRET, PIN)
        obj = tpm.load(srk, blob["private"], blob["public"])
        meta = {"format": 1, "board": "bench", "pcr_bank": "sha256", "pcrs": PCRS,
                "expected": {str(i): expected[i].hex() for i in PCRS}, "components": [], "policy": "pcr",
                "objects": [{"name": "user-secret", "pin": True, "public": blob["public"].hex(),
                             "private": blob["private"].hex()}]}
    finally:
        tpm.transport.close()
    return srk, obj, meta


def _flush(port: int, *handles: int) -> None:
    tpm = Tpm(SwtpmTransport("127.0.0.1", port))
    try:
        for h in handles:
            tpm.flush_context(h)
    finally:
        tpm.transport.close()


def _boot_release(port: int, meta: dict[str, Any], n: int) -> list[float]:
    tpm = Tpm(SwtpmTransport("127.0.0.1", port))
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            res = _release.release(tpm, meta, pin=PIN)
            out.append(time.perf_counter() - t0)
            if not res.unsealed:
                raise RuntimeError("release failed: %s" % res.reason)
            res.wipe()
    finally:
        tpm.transport.close()
    return out


def main() -> int:
    if shutil.which("swtpm") is None:
        print("bench_unseal: swtpm is not installed")
        return 1
    try:
        import tpm2_pytss  # noqa: F401
        have_pytss = True
    except ImportError as e:
        print("bench_unseal: tpm2-pytss unavailable (%s): only our client is timed" % e)
        have_pytss = False
    with tempfile.TemporaryDirectory(prefix="bench-unseal-") as tmp:
        proc, port = _start_swtpm(Path(tmp))
        try:
            srk, obj, meta = _setup(port)
            ours: list[float] = []
            theirs: list[float] = []
            _ours(port, srk, obj, 5)  # warm-up both paths (imports, caches)
            if have_pytss:
                _pytss(port, srk, obj, 5)
            for _ in range(ROUNDS):
                ours += _ours(port, srk, obj, PER_ROUND)
                if have_pytss:
                    theirs += _pytss(port, srk, obj, PER_ROUND)
            _flush(port, srk, obj)
            release = _boot_release(port, meta, PER_ROUND)
        finally:
            _stop(proc)
    res: dict[str, Any] = {"ours_ms": round(statistics.median(ours) * 1000, 2),
                           "ours_p90_ms": round(sorted(ours)[int(len(ours) * 0.9)] * 1000, 2),
                           "boot_release_ms": round(statistics.median(release) * 1000, 2), "n": len(ours)}
    if theirs:
        res["tpm2_pytss_ms"] = round(statistics.median(theirs) * 1000, 2)
        res["tpm2_pytss_p90_ms"] = round(sorted(theirs)[int(len(theirs) * 0.9)] * 1000, 2)
        res["ratio"] = round(statistics.median(ours) / statistics.median(theirs), 2)
    print("salted policy unseal (StartAuthSession salted ECC + PolicyPCR + PolicyAuthValue + Unseal "
          "encrypted + Flush), median of %d:" % len(ours))
    print("  ours        %.2f ms (p90 %.2f)" % (res["ours_ms"], res["ours_p90_ms"]))
    if theirs:
        print("  tpm2-pytss  %.2f ms (p90 %.2f)   ours/theirs = %.2f (target <= 1.5)"
              % (res["tpm2_pytss_ms"], res["tpm2_pytss_p90_ms"], res["ratio"]))
    print("  boot release (SRK CreatePrimary + Load + the above + flushes): %.2f ms" % res["boot_release_ms"])
    print(json.dumps(res, sort_keys=True))
    if theirs and res["ratio"] > 1.5:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
