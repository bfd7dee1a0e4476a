# Call set-up with attestation vs without (issue 10 §8; docs/BENCHMARKS.md "Attestation"), on real
# QEMU phones (TCG) through the same Kamailio over TLS: two phones provisioned with an attestation
# key (INVITE and 2xx carry evidence; each side quotes through its broker and appraises the other)
# against two provisioned with --no-attestation (plain SDP; peers are "unattested"), same image.
# Per call: `call` on alice's console -> carol's status shows the incoming call ("ring": the
# caller's quote + the callee's appraisal), and `answer` on carol -> alice's status shows it
# connected ("answer": the callee's quote + the caller's appraisal). Status is polled every 0.1 s
# over the serial console, so each figure carries up to ~0.1 s of polling granularity (the same on
# both sides of the ratio). Median of CALLS calls per pair; target: attested <= 1.5x plain.
#
# Run: PYTHONPATH=. python -m bench call_attest  (needs root, Kamailio; boots 4 phones, 2 at a time)
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from host_tools.console import Console  # noqa: E402
from host_tools.provision import __main__ as provision_cli  # noqa: E402
from tests.system.conftest import BOARD  # noqa: E402
from tests.system.test_call import (BOOT_TIMEOUT, DOMAIN, CallPhone, _call, kamailio_for_phone,  # noqa: E402
                                    wait_status)

CALLS = 5
IMAGE = REPO / "build" / BOARD


def _wait(con: Console, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_status(con, cond, what, timeout, every=0.1)


def _provision(p: CallPhone, user: str, attest: bool) -> None:
    p.secrets.write_text(json.dumps({"sip-account": {"username": user, "password": user + "pw"}}))
    args = ["--device", p.name, "--board", BOARD, "--build-dir", str(p.image), "--devices-dir",
            str(p.devices), "--secrets", str(p.secrets), "--policy-key", str(p.policy_key)]
    if provision_cli.main(args + ([] if attest else ["--no-attestation"])) != 0:
        raise RuntimeError(f"provisioning {p.name} failed")


def pair(base: Path, attest: bool) -> dict[str, Any]:
    tag = "att" if attest else "plain"
    (base / tag).mkdir()
    a, b = CallPhone(IMAGE, base / tag, f"bench-{tag}-a"), CallPhone(IMAGE, base / tag, f"bench-{tag}-b")
    _provision(a, "alice", attest)
    _provision(b, "carol", attest)
    rings, answers, levels = [], [], set()
    with a.device.running("tcp") as ra, b.device.running("tcp") as rb:
        ca, cb = ra.console, rb.console
        assert ca is not None and cb is not None
        try:
            for r, con in ((ra, ca), (rb, cb)):
                r.wait_prompt(con, BOOT_TIMEOUT)
                if not r.forward_media(con):
                    raise RuntimeError("media forwarding failed")
                _wait(con, lambda s: s.get("registered") is True, "registration", 120)
            for _ in range(CALLS):
                t0 = time.monotonic()
                out = ca.command(f"call sip:carol@{DOMAIN}")
                if not out.startswith("calling "):
                    raise RuntimeError(out)
                st = _wait(cb, lambda s: _call(s).get("state") == "incoming", "incoming")
                rings.append(time.monotonic() - t0)
                levels.add(str((st["call"].get("remote") or {}).get("level")))
                t1 = time.monotonic()
                cb.command("answer")
                _wait(ca, lambda s: _call(s).get("state") == "connected", "connected")
                answers.append(time.monotonic() - t1)
                ca.command("hangup")
                _wait(ca, lambda s: s.get("call") is None, "ended")
                _wait(cb, lambda s: s.get("call") is None, "ended at carol")
            if attest:
                # the phones' own timings of each step (firmware/phone/app.py log lines)
                for who, con in (("alice", ca), ("carol", cb)):
                    for line in json.loads(con.command("messages"))["messages"]:
                        if line.endswith(" ms"):
                            print("  %s: %s" % (who, line))
        finally:
            ra.shutdown(ca)
            rb.shutdown(cb)
    return {"ring_s": statistics.median(rings), "answer_s": statistics.median(answers),
            "setup_s": statistics.median(r + s for r, s in zip(rings, answers)), "levels": sorted(levels),
            "runs": len(rings), "first_s": rings[0] + answers[0]}


def main() -> dict[str, Any]:
    gen = kamailio_for_phone(IMAGE)
    next(gen)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-call-attest-") as d:
            att = pair(Path(d), True)
            plain = pair(Path(d), False)
    finally:
        gen.close()  # type: ignore[attr-defined]
    out = {"attested": att, "plain": plain, "ratio": round(att["setup_s"] / plain["setup_s"], 2)}
    for k in ("attested", "plain"):
        v = out[k]
        print("%-9s ring %.2f s  answer %.2f s  set-up %.2f s  levels %s (median of %d; first call %.2f s)"
              % (k, v["ring_s"], v["answer_s"], v["setup_s"], ",".join(v["levels"]), v["runs"],
                 v["first_s"]))
    out["first_ratio"] = round(att["first_s"] / plain["first_s"], 2)
    print("ratio attested/plain: %.2f (target <= 1.5); first call of each pair: %.2f"
          % (out["ratio"], out["first_ratio"]))
    return out


if __name__ == "__main__":
    main()
