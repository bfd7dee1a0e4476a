# mypy: disable-error-code="no-untyped-call"
# (firmware/ is the untyped MicroPython subset; its calls are checked by the tests themselves)
"""SIP/SDES interop with an independent implementation: our UA core and a real baresip 1.0 call
each other through a real Kamailio over TLS (signalling and SDES offer/answer only; the media
path is tested elsewhere).

Each suite we can offer is answered by baresip (`mediaenc=srtp-mand`), and baresip's own offer is
answered by us with the strongest suite it lists. baresip is driven over `ctrl_tcp` (netstring
JSON). Needs Debian `baresip-core` besides the Kamailio packages.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Iterator

import pytest

from firmware.sip import ua as sipua
from firmware.sip.io_cpython import Runner, TlsFlow, now_ms
from firmware.sip.sdp import PREFERENCE, LocalMedia
from tests.interop.conftest import MODULES, Baresip
from tests.interop.test_kamailio import Kamailio, _register, make_pki

BARESIP = shutil.which("baresip")

pytestmark = pytest.mark.skipif(
    BARESIP is None or not os.path.exists(MODULES + "/srtp.so") or os.geteuid() != 0,
    reason="needs Debian baresip-core, kamailio(+tls modules) and root for Kamailio")


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kamailio, Baresip]]:
    d = tmp_path_factory.mktemp("kam-bs")
    make_pki(d)
    kam = Kamailio(d, "MD5")
    try:
        bs = Baresip(d / "bs", "bob", "bobpw", kam)
    except BaseException:
        kam.stop()
        raise
    try:
        yield kam, bs
    finally:
        bs.stop()
        kam.stop()


def _wait_bs(bs: Baresip, r: Runner, event_type: str, call_id: str, timeout: float = 10) -> dict[str, Any]:
    """The ctrl_tcp event of `event_type` for the call `call_id` (baresip's "id" is the SIP
    Call-ID); other events stay queued for later waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bs.pending.extend(bs.events())
        for e in bs.pending:
            if e.get("type") == event_type and e.get("id") == call_id:
                bs.pending.remove(e)
                return e
        r.step(50)
    raise TimeoutError("baresip sent no %s:\n%s" % (event_type, bs.log.read_text(errors="replace")[-2000:]))


@pytest.mark.parametrize("suite", PREFERENCE)
def test_we_call_baresip_each_suite(peers: tuple[Kamailio, Baresip], suite: str) -> None:
    kam, bs = peers
    r = Runner()
    try:
        alice = _register(kam, "alice", "alicepw", r)
        r.wait_for("alice", sipua.Registered)
        t0 = time.monotonic()
        cid = alice.call("sip:bob@127.0.0.1", LocalMedia("127.0.0.1", 41000, suites=(suite,)), now_ms())
        ans = r.wait_for("alice", sipua.CallAnswered, timeout_s=10)   # baresip auto-answers
        print("INVITE->200 (with 407 round trip) to baresip, %s: %.1f ms" % (suite, (time.monotonic() - t0) * 1000))
        assert ans.call_id == cid and ans.media.suite == suite and ans.media.codec == "PCMU"
        assert ans.media.remote_address == "127.0.0.1" and len(ans.media.rx_key) == 16
        # baresip reports the SRTP suite it keyed from our offer/answer
        menc = _wait_bs(bs, r, "CALL_MENC", cid)
        assert menc["param"] == "0,audio," + suite
        alice.hangup(cid, now_ms())
        r.wait_for("alice", sipua.CallEnded)
        _wait_bs(bs, r, "CALL_CLOSED", cid)
    finally:
        r.close()


def test_baresip_calls_us(peers: tuple[Kamailio, Baresip]) -> None:
    kam, bs = peers
    r = Runner()
    try:
        alice = _register(kam, "alice", "alicepw", r)
        r.wait_for("alice", sipua.Registered)
        bs.command("dial", "sip:alice@127.0.0.1")
        inc = r.wait_for("alice", sipua.IncomingCall, timeout_s=10)
        assert inc.secure and inc.caller.startswith("sip:bob@127.0.0.1")
        alice.answer(inc.call_id, LocalMedia("127.0.0.1", 41002), now_ms())
        ans = r.wait_for("alice", sipua.CallAnswered)
        # we answer with the strongest suite baresip offered (it offers AES_CM_128_HMAC_SHA1_80)
        assert ans.media.suite in PREFERENCE
        menc = _wait_bs(bs, r, "CALL_MENC", inc.call_id)
        assert menc["param"] == "0,audio," + ans.media.suite
        _wait_bs(bs, r, "CALL_ESTABLISHED", inc.call_id)
        bs.command("hangup")
        end = r.wait_for("alice", sipua.CallEnded, timeout_s=10)
        assert end.by == "remote" and end.reason == "remote hangup"
        print("baresip offered, we chose %s" % ans.media.suite)
    finally:
        r.close()
