"""TPM 2.0 response unmarshalling (firmware/tpm/marshal.py, structures.py, commands.py, public.py,
nv.py, attest.py, session.py; TPM 2.0 Part 1 §18, Part 2). Input: byte 0 picks the command whose
response this is, byte 1 the number of sessions (0 or 1); the rest is the response. It goes
through split_response/unmarshal_params as the client does, then the typed parsers of what came
back (TPMT_PUBLIC, TPMS_NV_PUBLIC, TPMS_ATTEST, Names). Documented errors: ParseError, TpmError.
Seeds: the real swtpm exchange in tests/unit/firmware/tpm_replay_data.py."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.errors import ParseError
    from firmware.tpm import commands as K
    from firmware.tpm.attest import parse_attest
    from firmware.tpm.errors import TpmError
    from firmware.tpm.nv import nv_name, parse_nv_public
    from firmware.tpm.public import object_name, parse_public

COMMANDS = sorted((v for v in vars(K).values() if isinstance(v, K.Command)), key=lambda c: c.cc)


def one_input(data):
    if len(data) < 2:
        return
    cmd = COMMANDS[data[0] % len(COMMANDS)]
    n_sessions = data[1] & 1
    handles, params, poff, auths = K.split_response(cmd, data[2:], n_sessions)
    out = K.unmarshal_params(cmd, params, poff)
    for key in ("outPublic",):
        if key in out:
            parse_public(out[key])
            object_name(out[key])
    if "nvPublic" in out:
        parse_nv_public(out["nvPublic"])
        nv_name(out["nvPublic"])
    if "quoted" in out:
        parse_attest(out["quoted"])


def seeds():
    from tests.unit.firmware.tpm_replay_data import EXCHANGE

    by_cc = dict((c.cc, i) for i, c in enumerate(COMMANDS))
    for cmd_hex, rsp_hex in EXCHANGE:
        cmd = bytes.fromhex(cmd_hex)
        cc = int.from_bytes(cmd[6:10], "big")
        if cc in by_cc:
            sessions = 1 if cmd[:2] == b"\x80\x02" else 0
            yield bytes([by_cc[cc], sessions]) + bytes.fromhex(rsp_hex)


if __name__ == "__main__":
    runner.main("tpm_response", one_input, (ParseError, TpmError), seeds)
