# firmware.secrets.release replayed byte for byte from a captured swtpm 0.7 exchange
# (python -m tests.tpm.test_secrets_capture), so the whole device flow runs under MicroPython too:
# SRK re-creation, LoadExternal + VerifySignature of the vendor's signed policy, a salted policy
# session with PolicyPCR + PolicyNV + PolicyAuthorize (+ PolicyAuthValue with the PIN), Unseal with
# the response encrypted, and a refusal after PCR 14 changed, with its diagnosis.
from firmware import compat
from firmware.secrets import release as R
from firmware.tpm import ecdh
from firmware.tpm.client import Tpm
from tests.unit.firmware.check import unhex

SIP = b'{"password":"replay-sip-password-0042","username":"phone1"}'
USER = b"replay user secret"
PIN = b"246810"
TAMPER = b"\x66" * 32  # what the tampered boot extends into PCR 14


def counter_random():
    state = [0]

    def random_bytes(n):
        state[0] += 1
        return bytes([(state[0] * 7 + i) & 0xFF for i in range(n)])

    return random_bytes


def scenario(tpm, meta):
    """The calls captured and replayed; returns what a test can compare (no secrets kept)."""
    out = {}
    a = R.release(tpm, meta, measured=meta["components"])
    out["golden"] = a.status()
    out["golden_secret"] = bytes(a.get("sip-account")).hex() if a.unsealed else None
    if a.unsealed:
        a.wipe()
    b = R.release(tpm, meta, pin=PIN, names=["user-secret"])
    out["pin"] = b.status()
    out["pin_secret"] = bytes(b.get("user-secret")).hex() if b.unsealed else None
    if b.unsealed:
        b.wipe()
    tpm.pcr_extend(14, {"sha256": TAMPER})
    measured = [dict(c) for c in meta["components"]]
    measured[0]["sha256"] = "66" * 32
    c = R.release(tpm, meta, measured=measured)
    out["tampered"] = c.status()
    return out


def run(tpm, meta):
    saved_rand, saved_pure = compat.random_bytes, ecdh.USE_PURE
    compat.random_bytes = counter_random()
    ecdh.USE_PURE = True  # the ephemeral scalar comes from random_bytes: salts replay too
    try:
        return scenario(tpm, meta)
    finally:
        compat.random_bytes, ecdh.USE_PURE = saved_rand, saved_pure


class ReplayTransport:
    def __init__(self, exchange):
        self.exchange = exchange
        self.i = 0

    def send(self, command):
        want, rsp = self.exchange[self.i]
        if command != unhex(want):
            raise AssertionError("command %d differs:\n%s\n%s" % (self.i, command.hex(), want))
        self.i += 1
        return unhex(rsp)


def _replay():
    from tests.unit.firmware import test_secrets_replay_data as D
    t = ReplayTransport(D.EXCHANGE)
    return run(Tpm(t), D.META), t, D


def test_release_replays_byte_exact():
    result, t, D = _replay()
    assert t.i == len(D.EXCHANGE)
    assert result == D.RESULT
    assert unhex(result["golden_secret"]) == SIP and unhex(result["pin_secret"]) == USER
    assert result["golden"] == {"unsealed": True, "state": "unsealed", "secrets": ["sip-account"]}


def test_tampered_boot_refused_by_the_tpm_with_diagnosis():
    result, _, D = _replay()
    st = result["tampered"]
    assert st["state"] == "integrity-failed" and st["unsealed"] is False
    assert st["reason"].startswith("TPM refused the sealed credentials (TPM_RC_VALUE at TPM2_PolicyAuthorize); "
                                   "PCR 14 differs from the sealed policy; component phone-app differs")
    assert [d["pcr"] for d in st["pcrs_differ"]] == [14]
    assert st["pcrs_differ"][0]["expected"] == D.META["expected"]["14"]


def test_secret_and_pin_never_on_the_wire():
    from tests.unit.firmware import test_secrets_replay_data as D
    wire = "".join(c + r for c, r in D.EXCHANGE)
    for needle in (SIP, USER, PIN):
        for i in range(len(needle) - 5):
            assert needle[i:i + 6].hex() not in wire
