# mypy: disable-error-code="no-untyped-call"
"""Calls from the booted phone: the real image under QEMU (TCG) + OVMF + swtpm, provisioned with a
SIP account sealed to its TPM, on QEMU user networking, against a real Kamailio (TLS, db_text
digest users) and a real baresip on the host.

* The phone unseals the account, registers over TLS verified with the image's own CA bundle (the
  test's Kamailio serves a certificate issued by the development CA the image carries, for
  10.0.2.2 = the host seen from the guest), calls baresip with a 1 kHz tone (`call URI tone=1000`)
  that baresip records and we check by frequency, then baresip calls the phone, the console
  answers, and the phone's status shows the 600 Hz tone baresip plays; hang-up both ways.
* A tampered phone-app: the TPM refuses the credentials, the phone never registers and `call` is
  refused with "integrity-failed: credentials are sealed".

* Two booted phones (alice and carol, booted concurrently) call each other through Kamailio, a
  tone each way, locked.

Kamailio listens on 127.0.0.1:5061 because the signed device-config names port 5061. Each phone
reports the RTP/RTCP ports it bound (status `media_port`, advertised as 127.0.0.1) and the runner
forwards them from the host into its guest (DeviceConfig.forward_media: QEMU monitor hostfwd_add);
media the guest sends to 127.0.0.1 goes to 10.0.2.2 (device-config network.address_map).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from host_tools.console import Console
from host_tools.provision import __main__ as provision_cli
from host_tools.qemu.device import Device, DeviceConfig
from host_tools.tamper.__main__ import main as tamper_main
from host_tools.siplab import (HAVE_BARESIP, HAVE_KAMAILIO, IS_ROOT, Baresip, Kamailio, make_server_cert,
                               port_free, port_lock, read_wav)
from tests.system.conftest import BOARD

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 300.0
SIP_TLS_PORT = 5061          # device-config sip.port (signed into the bundle)
DOMAIN = "127.0.0.1"         # device-config sip.domain = the test Kamailio's db_text domain
PHONE_USER, PHONE_PASSWORD = "alice", "alicepw"   # a db_text subscriber of tests/data/sip/kamailio
TONE_TO_BARESIP = 1000
BARESIP_TONE = 600


@pytest.fixture(scope="module")
def kam(built_image: Path) -> Iterator[Kamailio]:
    yield from kamailio_for_phone(built_image)


def kamailio_for_phone(built_image: Path, defines: tuple[str, ...] = ()) -> Iterator[Kamailio]:
    """Kamailio on 127.0.0.1:5061 with a certificate from the image's development CA."""
    if not HAVE_KAMAILIO or not IS_ROOT:
        pytest.skip("needs Debian kamailio + kamailio-tls-modules, openssl, and root")
    keys = built_image.parent / "keys"
    ca_pem, ca_key = keys / "dev-ca.pem", keys / "dev-ca.key"
    bundle_ca = built_image / "bundle" / "components" / "ca-bundle"
    if not (ca_key.is_file() and bundle_ca.is_file()) or bundle_ca.read_bytes() != ca_pem.read_bytes():
        pytest.skip("the image's ca-bundle is not the development CA of %s" % keys)
    with port_lock(SIP_TLS_PORT):   # another worker's module may hold it: wait for it
        if not port_free(SIP_TLS_PORT):
            pytest.fail("127.0.0.1:%d is taken: the phone's signed device-config names it"
                        % SIP_TLS_PORT)
        d = Path(tempfile.mkdtemp(prefix="kam-qemu-"))
        try:
            make_server_cert(d, ca_pem, ca_key, "IP:10.0.2.2,IP:127.0.0.1,DNS:localhost")
            k = Kamailio(d, "MD5", tls_port=SIP_TLS_PORT, defines=defines)
            try:
                yield k
            finally:
                k.stop()
        finally:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def bob(kam: Kamailio) -> Iterator[Baresip]:
    if not HAVE_BARESIP:
        pytest.skip("needs Debian baresip-core")
    from firmware.phone.tone import sine_pcm

    bs = Baresip(kam.dir / "bs-bob", "bob", "bobpw", kam,
                 source_pcm=sine_pcm(BARESIP_TONE, 60000, amplitude=6000), record=True)
    try:
        yield bs
    finally:
        bs.stop()


class CallPhone:
    """One provisioned device with networking; `golden` is its flash as provisioned."""

    def __init__(self, image: Path, base: Path, name: str = "callphone") -> None:
        self.image = image
        self.name = name
        self.devices = base / "devices"
        self.device = Device(name, DeviceConfig(board=BOARD, build_dir=image, devices_dir=self.devices,
                                                network=True, forward_media=True))
        self.secrets = base / ("%s-secrets.json" % name)
        self.policy_key = base / "policy-signing-key.pem"

    def provision(self, user: str, password: str) -> None:
        self.secrets.write_text(json.dumps({"sip-account": {"username": user, "password": password}}))
        rc = provision_cli.main(["--device", self.name, "--board", BOARD, "--build-dir", str(self.image),
                                 "--devices-dir", str(self.devices), "--secrets", str(self.secrets),
                                 "--policy-key", str(self.policy_key)])
        assert rc == 0
        self.golden = self.device.disk.read_bytes()

    def tamper(self, *args: str) -> None:
        rc = tamper_main(["--device", self.name, "--image-dir", str(self.image), "--devices-dir",
                          str(self.devices), *args])
        assert rc == 0


def wait_status(con: Console, cond: Callable[[dict[str, Any]], bool], what: str,
                timeout: float = 60.0, every: float = 0.5) -> dict[str, Any]:
    return con.wait_status(cond, what, timeout, every)


def _needs_guest_network(st: dict[str, Any]) -> None:
    reason = str(st.get("registered_reason") or "")
    if "Network is unreachable" in reason:
        pytest.fail("the image's /init does not bring up eth0 (10.0.2.15/24 via 10.0.2.2): "
                    "board/qemu-x86_64/init.sh needs the network lines of docs/calling.md")


def _call(st: dict[str, Any]) -> dict[str, Any]:
    c = st.get("call")
    return c if isinstance(c, dict) else {}


@pytest.fixture(scope="module")
def phone(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> CallPhone:
    p = CallPhone(built_image, tmp_path_factory.mktemp("callphone"))
    p.provision(PHONE_USER, PHONE_PASSWORD)
    return p


def test_booted_phone_registers_calls_baresip_and_is_called(phone: CallPhone, kam: Kamailio,
                                                            bob: Baresip) -> None:
    from firmware.phone.tone import dominant_frequency

    with phone.device.boot(timeout=BOOT_TIMEOUT) as con:
        t0 = time.monotonic()
        st = wait_status(con, lambda s: s.get("registered") is True or s.get("unsealed") is False
                         or "Network is unreachable" in str(s.get("registered_reason")),
                         "registration", timeout=90)
        registered_after = time.monotonic() - t0
        _needs_guest_network(st)
        assert st["unsealed"] is True and st["state"] == "running", st
        assert st["registered"] is True, st
        assert st["transport"] == "TLS" and st["tls_verified"] is True
        assert st["aor"] == "sip:%s@%s" % (PHONE_USER, DOMAIN)
        # Kamailio accepted the unsealed credentials (digest) from the guest's flow
        assert "REQ REGISTER" in kam.log.read_text(errors="replace")
        assert st["media_address"] == "127.0.0.1" and st["media_port"] % 2 == 0
        print("registered %.1f s after boot() returned (prompt + media forwarding)" % registered_after)

        # --- the phone calls baresip (auto-answer), sending a 1 kHz tone -----------------------
        bob.clear_recordings()
        log_from = len(bob.log_text())
        out = con.command("call sip:bob@%s tone=%d" % (DOMAIN, TONE_TO_BARESIP))
        assert out.startswith("calling sip:bob@"), out
        cid = out.split("(call ")[1].split(")")[0]
        st = wait_status(con, lambda s: _call(s).get("state") == "connected", "call connected", 30)
        c = st["call"]
        assert c["call_id"] == cid and c["direction"] == "out" and c["peer"] == "sip:bob@" + DOMAIN
        assert c["suite"] in ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"), c
        assert c["security"] == "locked" and c["why"] == "", c
        st = wait_status(con, lambda s: _call(s).get("media", {}).get("sent", 0) >= 150,
                         "3 s of media sent", 30)
        assert st["call"]["media"]["dropped"] == {k: 0 for k in st["call"]["media"]["dropped"]}
        assert st["call"]["audio"]["tone_hz_sent"] == TONE_TO_BARESIP
        out = con.command("hangup")
        assert out.startswith("hanging up call " + cid), out
        bob.wait_event("CALL_CLOSED", cid, lambda: time.sleep(0.05), timeout=15)
        st = wait_status(con, lambda s: s.get("call") is None, "call ended", 15)
        assert st["last_call"]["reason"] == "local hangup" and st["last_call"]["media"]["sent"] >= 150
        dec = bob.recordings().get("dec")
        assert dec is not None, "baresip recorded nothing"
        pcm = read_wav(dec)
        f, share = dominant_frequency(pcm)
        assert abs(f - TONE_TO_BARESIP) <= 25 and share > 0.5, (f, share, len(pcm))
        assert "failed to decrypt RTP" not in bob.log_text()[log_from:]
        print("baresip heard %d Hz (share %.2f) in %d samples" % (f, share, len(pcm) // 2))

        # --- baresip calls the phone; the console answers ----------------------------------------
        bob.command("dial", "sip:%s@%s" % (PHONE_USER, DOMAIN))
        st = wait_status(con, lambda s: _call(s).get("state") == "incoming", "incoming call", 30)
        assert st["call"]["peer"] == "sip:bob@" + DOMAIN and st["call"]["direction"] == "in"
        out = con.command("answer")
        assert out.startswith("answered call "), out
        st = wait_status(con, lambda s: _call(s).get("state") == "connected", "answered", 20)
        assert st["call"]["security"] == "locked", st["call"]
        assert st["call"]["suite"] == "AES_CM_128_HMAC_SHA1_80"   # baresip offers only this one
        first = st["call"]["media"]["received"]
        st = wait_status(con, lambda s: _call(s).get("audio", {}).get("dominant_hz") == BARESIP_TONE
                         and _call(s)["media"]["received"] >= first + 50, "baresip's tone heard", 30)
        audio = st["call"]["audio"]
        assert audio["tone_share"] > 0.5 and audio["rms"] > 1000, audio
        print("phone heard %s" % json.dumps(audio))
        bob.command("hangup")
        st = wait_status(con, lambda s: s.get("call") is None, "hung up by baresip", 15)
        assert st["last_call"]["by"] == "remote", st["last_call"]
        assert st["registered"] is True


def test_tampered_phone_cannot_register_or_call(phone: CallPhone, kam: Kamailio) -> None:
    phone.tamper("--component", "phone-app")
    try:
        with phone.device.boot(timeout=BOOT_TIMEOUT) as con:
            st = con.status()
            assert st["unsealed"] is False and st["state"] == "integrity-failed", st
            assert st["registered"] is False
            assert st["registered_reason"].startswith("credentials are sealed: TPM refused"), st
            out = con.command("call sip:bob@%s" % DOMAIN)
            assert out.strip() == "error: integrity-failed: credentials are sealed", out
            time.sleep(3)   # it never tries: no REGISTER from a second flow shows up
            st = con.status()
            assert st["registered"] is False and st["call"] is None
            assert "media_port" not in st    # a sealed phone binds nothing
    finally:
        phone.device.disk.write_bytes(phone.golden)


def test_two_booted_phones_call_each_other(phone: CallPhone, kam: Kamailio,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    other = CallPhone(phone.image, tmp_path_factory.mktemp("callphone2"), "callphone2")
    other.provision("carol", "carolpw")
    with phone.device.running("tcp") as ra, other.device.running("tcp") as rb:
        a, b = ra.console, rb.console
        assert a is not None and b is not None
        try:
            t0 = time.monotonic()
            ra.wait_prompt(a, BOOT_TIMEOUT)
            rb.wait_prompt(b, BOOT_TIMEOUT)
            print("both prompts after %.1f s" % (time.monotonic() - t0))
            pa, pb = ra.forward_media(a), rb.forward_media(b)
            assert pa and pb and pa != pb
            for con in (a, b):
                _needs_guest_network(con.status())
                wait_status(con, lambda s: s.get("registered") is True, "registration", 90)
            out = a.command("call sip:carol@%s tone=%d" % (DOMAIN, TONE_TO_BARESIP))
            assert out.startswith("calling sip:carol@"), out
            wait_status(b, lambda s: _call(s).get("state") == "incoming", "incoming at carol", 30)
            assert b.command("answer tone=%d" % BARESIP_TONE).startswith("answered call ")
            sa = wait_status(a, lambda s: _call(s).get("audio", {}).get("dominant_hz") == BARESIP_TONE,
                             "alice hears carol's tone", 30)["call"]
            sb = wait_status(b, lambda s: _call(s).get("audio", {}).get("dominant_hz") == TONE_TO_BARESIP,
                             "carol hears alice's tone", 30)["call"]
            for c in (sa, sb):
                assert c["state"] == "connected" and c["security"] == "locked", c
                assert c["suite"] == "AEAD_AES_128_GCM" and c["audio"]["tone_share"] > 0.5, c
            assert sa["peer"] == "sip:carol@" + DOMAIN and sb["peer"] == "sip:alice@" + DOMAIN
            print("alice heard %s; carol heard %s" % (json.dumps(sa["audio"]), json.dumps(sb["audio"])))
            assert a.command("hangup").startswith("hanging up call ")
            st = wait_status(b, lambda s: s.get("call") is None, "carol's call ended", 15)
            assert st["last_call"]["by"] == "remote"
        finally:
            ra.shutdown(a)
            rb.shutdown(b)
