# Test-only attacker code (never in the production image): tests/system/test_tpm_privilege.py
# puts this in front of firmware/console/__main__.py inside a phone-app component re-signed with
# the dev key (the "compromised build server" of `make tamper`), so it runs where the phone
# application runs, after the real stage loader: as the phone's uid, or as root in the test
# image variant. It tries what issue 9 part 2 says must fail and prints one line:
#   ATTACK {json}
# then the genuine console starts.
import json as _json
import os as _os


def _attack():
    out = {"uid": _os.getuid()}
    for dev in ("/dev/tpmrm0", "/dev/tpm0"):
        try:
            _os.close(_os.open(dev, _os.O_RDWR))
            out[dev] = "opened"
        except OSError as e:
            out[dev] = "errno %d" % e.errno
    fd = _os.getenv("PHONE_BROKER_FD")
    if fd:
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, int(fd))
        answers = []
        for req in (b'{"op": "dictionary_attack_lock_reset"}',
                    b'{"op": "nv_undefine", "index": 16779856}',
                    b"\x80\x01\x00\x00\x00\x0a\x00\x00\x01\x39",  # raw TPM2_DictionaryAttackLockReset
                    b'{"op": "unlock", "pin": "1234; da reset"}'):
            s.send(req)
            answers.append(_json.loads(s.recv(8192)))
        out["broker"] = answers
        s.detach()  # the console uses the same descriptor
    if _os.getuid() == 0:
        out["tpm"] = _root_attacks()
    print("ATTACK " + _json.dumps(out, sort_keys=True), flush=True)


def _root_attacks():
    from firmware.tpm import constants as C
    from firmware.tpm.client import Tpm
    from firmware.tpm.errors import TpmError
    from firmware.tpm.transport_dev import DeviceTransport
    tpm = Tpm(DeviceTransport("/dev/tpmrm0"))
    index = 0x01000A50
    tries = {
        "DictionaryAttackLockReset": lambda: tpm.dictionary_attack_lock_reset(),
        "Clear(lockout)": lambda: tpm.clear(C.TPM_RH_LOCKOUT),
        "Clear(platform)": lambda: tpm.clear(C.TPM_RH_PLATFORM),
        "NV_UndefineSpace(owner)": lambda: tpm.nv_undefine_space(index),
        "NV_UndefineSpace(platform)": lambda: tpm.nv_undefine_space(index, hierarchy=C.TPM_RH_PLATFORM),
        "HierarchyChangeAuth(owner)": lambda: tpm.hierarchy_change_auth(C.TPM_RH_OWNER, b"x"),
        "HierarchyChangeAuth(endorsement)": lambda: tpm.hierarchy_change_auth(C.TPM_RH_ENDORSEMENT, b"x"),
        "HierarchyChangeAuth(lockout)": lambda: tpm.hierarchy_change_auth(C.TPM_RH_LOCKOUT, b"x"),
        "HierarchyChangeAuth(platform)": lambda: tpm.hierarchy_change_auth(C.TPM_RH_PLATFORM, b"x"),
        "HierarchyControl(platform on)": lambda: tpm.hierarchy_control(C.TPM_RH_PLATFORM, True),
    }
    out = {}
    for name, fn in tries.items():
        try:
            fn()
            out[name] = "accepted"
        except TpmError as e:
            out[name] = "0x%03x %s" % (e.rc, e.name)
        except Exception as e:  # noqa: BLE001
            out[name] = "%s: %s" % (e.__class__.__name__, e)
    try:
        out["startup_clear"] = "0x%08x" % tpm.startup_clear_flags()
        out["rollback_index"] = "0x%08x" % tpm.nv_read_public(index)["parsed"]["attributes"]
    except Exception as e:  # noqa: BLE001
        out["read_error"] = str(e)
    tpm.transport.close()
    return out


try:
    _attack()
except Exception as _e:  # noqa: BLE001  the test then fails on the missing line
    print("ATTACK-ERROR %s: %s" % (_e.__class__.__name__, _e), flush=True)
