# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset)
# Call benchmarks:
# (a) call set-up time, INVITE to 200 OK as the caller sees it (call() until the answer is in,
#     digest 407 round trip included), through a real Kamailio over TLS on 127.0.0.1: two of our
#     phones (firmware.phone over the CPython shim, callee auto-answers) against two baresip 1.0
#     (`dial` on ctrl_tcp until the caller's CALL_ESTABLISHED, callee answermode=auto), same
#     Kamailio, same run; median of N calls each. Target: ours <= 1.5x baresip.
# (b) CPU microseconds per media packet through the phone's whole media path (CallMedia: G.711
#     encode + RTP + SRTP protect on one side, SRTP unprotect + RTP + jitter buffer + G.711 decode
#     on the other), per suite, for the pure engine and the default engine ("auto": libsrtp on
#     CPython when pylibsrtp is present).
#
# Run: PYTHONPATH=. python -m bench call  (or through `make bench`). main() prints and returns a
# dict; (a) is skipped with a message when Kamailio/baresip or root are missing.
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from firmware.phone.call import CallMedia  # noqa: E402
from firmware.phone.tone import sine_pcm  # noqa: E402
from firmware.sip.sdp import PREFERENCE, MediaParams  # noqa: E402
from bench._micropython import run_script

CALLS = 15
MEDIA_PACKETS = 1500


def _params(suite: str, tx: tuple[bytes, bytes], rx: tuple[bytes, bytes]) -> MediaParams:
    n = 12 if suite == "AEAD_AES_128_GCM" else 14
    return MediaParams("127.0.0.1", 30000, 0, 101, suite, tx[0], tx[1][:n], rx[0], rx[1][:n])


def media_cpu_us(suite: str, engine: str, n: int = MEDIA_PACKETS) -> tuple[float, float]:
    """(send us, receive us) of process CPU per 20 ms packet through two CallMedia cores."""
    ka, kb = (os.urandom(16), os.urandom(14)), (os.urandom(16), os.urandom(14))
    a = CallMedia(_params(suite, ka, kb), 0, engine=engine, rtcp_interval_ms=10 ** 9)
    b = CallMedia(_params(suite, kb, ka), 0, engine=engine, rtcp_interval_ms=10 ** 9,
                  jitter_delay_ms=0)
    tone = sine_pcm(1000, 20 * n)
    a.send_pcm(tone)
    send = recv = 0.0
    pcm = 0
    for i in range(n):
        now = 20 * i
        t0 = time.process_time()
        a.handle_timer(now)
        out = a.datagrams_to_send()
        t1 = time.process_time()
        for kind, data, addr in out:
            b.receive(data, addr, now, False)
        b.handle_timer(now)   # jitter buffer playout + decode (b's own sending is not timed)
        pcm += len(b.read_pcm())
        t2 = time.process_time()
        b.datagrams_to_send()
        send += t1 - t0
        recv += t2 - t1
    if pcm < 320 * (n - 5):
        raise RuntimeError("media path lost audio: %d of %d bytes" % (pcm, 320 * n))
    return send / n * 1e6, recv / n * 1e6


def bench_media() -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for suite in PREFERENCE:
        row = {}
        for engine in ("pure", "auto"):
            # best of 3 short rounds: the machine is shared
            runs = [media_cpu_us(suite, engine) for _ in range(3)]
            row[engine] = min(runs, key=lambda r: r[0] + r[1])
        out[suite] = row
    return out


MPY_SCRIPT = """
import sys, time
sys.path.insert(0, REPO)
from firmware.phone.call import CallMedia
from firmware.phone.tone import sine_pcm
from firmware.sip.sdp import MediaParams
N = 200
for suite in ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"):
    n = 12 if suite == "AEAD_AES_128_GCM" else 14
    ka, kb, s1, s2 = bytes(range(16)), bytes(range(16, 32)), bytes(range(n)), bytes(range(1, n + 1))
    a = CallMedia(MediaParams("127.0.0.1", 30000, 0, 101, suite, ka, s1, kb, s2), 0,
                  engine="pure", rtcp_interval_ms=10 ** 9, ntp_offset_ms=0)
    b = CallMedia(MediaParams("127.0.0.1", 30000, 0, 101, suite, kb, s2, ka, s1), 0,
                  engine="pure", rtcp_interval_ms=10 ** 9, jitter_delay_ms=0, ntp_offset_ms=0)
    a.send_pcm(sine_pcm(1000, 20 * N))
    send = recv = 0
    for i in range(N):
        now = 20 * i
        t0 = time.ticks_us()
        a.handle_timer(now)
        out = a.datagrams_to_send()
        t1 = time.ticks_us()
        for kind, data, addr in out:
            b.receive(data, addr, now, False)
        b.handle_timer(now)
        b.read_pcm()
        t2 = time.ticks_us()
        b.datagrams_to_send()
        send += time.ticks_diff(t1, t0)
        recv += time.ticks_diff(t2, t1)
    print(suite, N, send, recv)
"""


def bench_micropython() -> dict[str, tuple[float, float]] | None:
    """(send us, receive us) per packet through CallMedia under the micropython binary (pure
    engine; wall-clock microseconds of one busy process, as time.ticks_us measures)."""
    stdout = run_script(MPY_SCRIPT)
    if stdout is None:
        return None
    res = {}
    for line in stdout.split("\n"):
        parts = line.split()
        if len(parts) == 4:
            n = int(parts[1])
            res[parts[0]] = (int(parts[2]) / n, int(parts[3]) / n)
    return res


def bench_setup(calls: int = CALLS) -> dict[str, Any] | None:
    from tests.interop import conftest as peers
    from tests.interop.test_kamailio import Kamailio, make_pki

    if not (peers.HAVE_KAMAILIO and peers.HAVE_BARESIP and peers.IS_ROOT):
        print("call set-up: skipped (needs kamailio + tls modules, baresip-core, root)")
        return None
    from firmware.phone.io_cpython import PhoneIo, PhoneLoop
    from firmware.sip import ua as sipua

    d = Path(tempfile.mkdtemp(prefix="bench-call-"))
    make_pki(d)
    kam = Kamailio(d, "MD5")
    result: dict[str, Any] = {}
    try:
        # ours: alice calls carol, carol answers as soon as the INVITE arrives
        a = PhoneIo.open(sipua.UaConfig("alice", "127.0.0.1", "alicepw"), "127.0.0.1", kam.tls_port,
                         kam.ca)
        c = PhoneIo.open(sipua.UaConfig("carol", "127.0.0.1", "carolpw"), "127.0.0.1", kam.tls_port,
                         kam.ca, auto_answer=True)
        loop = PhoneLoop(a, c)
        ours = []
        try:
            a.app.register()
            c.app.register()
            loop.wait_event(a, sipua.Registered)
            loop.wait_event(c, sipua.Registered)
            for _ in range(calls + 1):
                t0 = time.perf_counter()
                a.app.call("sip:carol@127.0.0.1")
                loop.wait_event(a, sipua.CallAnswered)
                ours.append((time.perf_counter() - t0) * 1000)
                a.app.hangup()
                loop.wait_event(a, sipua.CallEnded)
                loop.wait_event(c, sipua.CallEnded)
                a.events.clear()
                c.events.clear()
        finally:
            loop.close()
        # baresip: bob calls carol, carol auto-answers
        bob = peers.Baresip(d / "bs-bob", "bob", "bobpw", kam)
        try:
            carol = peers.Baresip(d / "bs-carol", "carol", "carolpw", kam)
        except BaseException:
            bob.stop()
            raise
        theirs = []
        try:
            for _ in range(calls + 1):
                t0 = time.perf_counter()
                bob.command("dial", "sip:carol@127.0.0.1")
                e = bob.wait_event("CALL_ESTABLISHED", None, lambda: time.sleep(0.0005))
                theirs.append((time.perf_counter() - t0) * 1000)
                bob.command("hangup")
                bob.wait_event("CALL_CLOSED", e.get("id"), lambda: time.sleep(0.002))
                carol.wait_event("CALL_CLOSED", e.get("id"), lambda: time.sleep(0.002))
                bob.pending.clear()
                carol.pending.clear()
        finally:
            carol.stop()
            bob.stop()
        # the first call of each warms up (TLS session to the callee, imports, caches)
        result = {"ours_ms": statistics.median(ours[1:]), "baresip_ms": statistics.median(theirs[1:]),
                  "ours_all": ours[1:], "baresip_all": theirs[1:], "calls": calls}
        result["ratio"] = result["ours_ms"] / result["baresip_ms"]
    finally:
        kam.stop()
    return result


def main() -> dict[str, Any]:
    setup = bench_setup()
    if setup is not None:
        print("Call set-up INVITE -> 200 OK through Kamailio over TLS (MD5 digest, 407 round trip"
              " included), median of %d calls:" % setup["calls"])
        print("  ours (2 phones, firmware.phone)   %7.1f ms  (min %.1f, max %.1f)"
              % (setup["ours_ms"], min(setup["ours_all"]), max(setup["ours_all"])))
        print("  baresip -> baresip                %7.1f ms  (min %.1f, max %.1f)"
              % (setup["baresip_ms"], min(setup["baresip_all"]), max(setup["baresip_all"])))
        print("  ratio ours/baresip                %7.2fx  (target <= 1.5x)" % setup["ratio"])
    media = bench_media()
    print("CPU us per 20 ms media packet, CallMedia (send: G.711 enc + RTP + SRTP protect;"
          " receive: SRTP unprotect + RTP + jitter + G.711 dec):")
    print("  %-26s %22s %22s" % ("suite", "pure send/recv/total", "default send/recv/total"))
    for suite, row in media.items():
        p, d = row["pure"], row["auto"]
        print("  %-26s %6.1f /%6.1f /%6.1f  %6.1f /%6.1f /%6.1f"
              % (suite, p[0], p[1], p[0] + p[1], d[0], d[1], d[0] + d[1]))
    mpy = bench_micropython()
    if mpy is None:
        print("MicroPython: not found, skipped")
    else:
        print("MicroPython, pure engine, us per 20 ms media packet (send / receive / total):")
        for suite, (snd, rcv) in mpy.items():
            print("  %-26s %8.0f /%8.0f /%8.0f" % (suite, snd, rcv, snd + rcv))
    return {"setup": setup, "media_cpu_us": media, "micropython_media_us": mpy}


if __name__ == "__main__":
    main()
