# A fixed sequence of client calls, run once against swtpm to capture (tests/tpm/capture_replay.py)
# and then replayed from the captured bytes by test_tpm_client_replay.py under CPython and
# MicroPython. Caller nonces come from a counter so the commands are reproducible.
from firmware.tpm import constants as C
from firmware.tpm import ecdh, policy, public
from firmware.tpm.client import AES128_CFB

PIN = b"4321"
SECRET = b"replayed secret"
SALTED_SECRET = b"salted, encrypted on the wire"


def counter_random():
    state = [0]

    def random_bytes(n):
        state[0] += 1
        return bytes([(state[0] + i) & 0xFF for i in range(n)])

    return random_bytes


def run_scenario(tpm):
    # The pure P-256 draws its ephemeral scalar from compat.random_bytes, so salts replay too.
    saved = ecdh.USE_PURE
    ecdh.USE_PURE = True
    try:
        return _scenario(tpm)
    finally:
        ecdh.USE_PURE = saved


def _scenario(tpm):
    srk = tpm.create_primary(C.TPM_RH_OWNER, public.srk_template_ecc())
    values = tpm.pcr_read_all("sha256")
    sel = policy.pcr_selection("sha256", [0, 7])
    pol = policy.seal_policy({0: values[0], 7: values[7]}, with_pin=True)
    blob = tpm.create(srk["handle"], public.sealed_template(pol), SECRET, PIN)
    h = tpm.load(srk["handle"], blob["private"], blob["public"])
    s = tpm.start_auth_session(C.TPM_SE_POLICY)
    tpm.policy_pcr(s, sel)
    tpm.policy_auth_value(s)
    digest = tpm.policy_get_digest(s)
    out = tpm.unseal(h, s, PIN)
    tpm.flush_context(s.handle)
    # salted sessions: Create with the sensitive area encrypted, Unseal with the answer encrypted
    cs = tpm.start_auth_session(C.TPM_SE_HMAC, salt_key=srk["handle"], symmetric=AES128_CFB,
                                attributes=C.TPMA_SESSION_DECRYPT)
    blob2 = tpm.create(srk["handle"], public.sealed_template(pol), SALTED_SECRET, PIN, session=cs)
    tpm.flush_context(cs.handle)
    h2 = tpm.load(srk["handle"], blob2["private"], blob2["public"])
    ss = tpm.start_auth_session(C.TPM_SE_POLICY, salt_key=srk["handle"], symmetric=AES128_CFB,
                                attributes=C.TPMA_SESSION_ENCRYPT)
    tpm.policy_pcr(ss, sel)
    tpm.policy_auth_value(ss)
    out2 = tpm.unseal(h2, ss, PIN)
    tpm.flush_context(ss.handle)
    tpm.flush_context(h2)
    hs = tpm.start_auth_session(C.TPM_SE_HMAC)
    tpm.pcr_extend(16, {"sha256": b"\x16" * 32}, session=hs)
    tpm.flush_context(hs.handle)
    after = tpm.pcr_read_all("sha256", [16])[16]
    tpm.flush_context(h)
    tpm.flush_context(srk["handle"])
    return {"secret": out.hex(), "salted_secret": out2.hex(), "policy": digest.hex(), "expected_policy": pol.hex(),
            "pcr16": after.hex(), "srk_name": srk["name"].hex()}
