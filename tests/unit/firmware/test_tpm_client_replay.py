# The whole client engine (command building, password/HMAC/policy session HMACs with cpHash and
# rpHash, response HMAC checks, PCR_Read chunking) replayed from a captured swtpm 0.7 exchange
# (tests/tpm/capture_replay.py): every command must equal, byte for byte, what swtpm accepted.
from firmware import compat
from firmware.tpm.client import Tpm
from firmware.tpm.session import SessionError
from tests.unit.firmware import tpm_replay_data as D
from tests.unit.firmware.check import raises, unhex
from tests.unit.firmware.tpm_replay_scenario import SALTED_SECRET, SECRET, counter_random, run_scenario


class ReplayTransport:
    def __init__(self, exchange, tamper=None):
        self.exchange = [(unhex(c), unhex(r)) for c, r in exchange]
        self.i = 0
        self.tamper = tamper

    def send(self, command):
        want, rsp = self.exchange[self.i]
        if command != want:
            raise AssertionError("command %d differs:\n%s\n%s" % (self.i, command.hex(), want.hex()))
        if self.tamper is not None:
            rsp = self.tamper(self.i, rsp)
        self.i += 1
        return rsp


def _run(tamper=None):
    saved = compat.random_bytes
    compat.random_bytes = counter_random()
    try:
        t = ReplayTransport(D.EXCHANGE, tamper)
        return run_scenario(Tpm(t)), t
    finally:
        compat.random_bytes = saved


def test_replay_byte_exact():
    result, t = _run()
    assert t.i == len(D.EXCHANGE)
    assert result == D.RESULT
    assert result["policy"] == result["expected_policy"]  # PolicyGetDigest == host computation


def test_retried_commands_get_fresh_nonces():
    # swtpm may answer TPM_RC_RETRY (0x922); the client then sends the command again with a fresh
    # caller nonce (the capture committed here has such a retry on the first Unseal).
    for i, (c, r) in enumerate(D.EXCHANGE):
        if r.endswith("00000922"):
            nxt = D.EXCHANGE[i + 1][0]
            assert nxt[12:20] == c[12:20] and nxt != c


def test_salted_secret_never_in_clear():
    # Create went through a salted session with the decrypt attribute, Unseal with encrypt.
    assert unhex(D.RESULT["salted_secret"]) == SALTED_SECRET
    wire = "".join(c + r for c, r in D.EXCHANGE)
    for i in range(len(SALTED_SECRET) - 6):
        assert SALTED_SECRET[i:i + 6].hex() not in wire
    # control: the first, unsalted seal and unseal carried their secret in clear
    assert SECRET.hex() in wire


def test_forged_unseal_response_is_rejected():
    # Flip one byte of the unsealed data in the TPM's answer: the response HMAC (rpHash, Part 1
    # §19.6.10) no longer verifies and the forged secret is never returned.
    idx = [i for i, (c, r) in enumerate(D.EXCHANGE) if c[12:20] == "0000015e" and r[12:20] == "00000000"][-1]

    def tamper(i, rsp):
        if i != idx:
            return rsp
        b = bytearray(rsp)
        b[20] ^= 1
        return bytes(b)

    e = raises(SessionError, _run, tamper)
    assert "does not verify" in str(e)
