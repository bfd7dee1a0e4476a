# firmware.secrets.store / flows / diagnose: the data-partition store layout (docs/sealing.md),
# its strict metadata checks, the policy digests and the refusal diagnosis. Runs under pytest and
# under MicroPython (micropython tests/mpy_run.py).

from firmware import compat
from firmware.errors import ParseError
from firmware.secrets import diagnose, flows, store
from firmware.secrets import release as R
from firmware.tpm import constants as C
from firmware.tpm import policy
from tests.unit.firmware.check import raises

H1 = "11" * 32
H2 = "22" * 32


def _meta():
    return {"format": 1, "board": "qemu-x86_64", "created": "2026-11-27T16:00:00Z", "image_version": "1.0",
            "pcr_bank": "sha256", "pcrs": [4, 14], "expected": {"4": H1, "14": H2},
            "components": [{"name": "phone-app", "version": "1.0", "sha256": H1, "pcr": 14},
                           {"name": "sip-media", "version": "1.0", "sha256": H2, "pcr": 14}],
            "policy": "pcr",
            "objects": [{"name": "sip-account", "pin": False, "public": "0008", "private": "00"}]}


def test_pack_layout_and_round_trip():
    m = _meta()
    raw = store.pack(m)
    assert raw[:8] == b"PHSEALED" and raw[8:10] == b"\x00\x01" and raw[10:12] == b"\x00\x00"
    n = int.from_bytes(raw[12:16], "big")
    assert len(raw) == 48 + n
    assert raw[16:48] == compat.sha256(raw[48:])
    assert store.unpack(raw + b"\x00" * 512) == m  # the partition's trailing zeros are fine


def test_header_errors_name_the_field():
    raw = store.pack(_meta())
    e = raises(ParseError, store.unpack, b"\x00" * 64)
    assert "blank" in str(e) and e.field == "magic"
    e = raises(ParseError, store.unpack, b"PHSEALEX" + raw[8:])
    assert e.field == "magic" and e.offset == 0
    e = raises(ParseError, store.unpack, raw[:8] + b"\x00\x02" + raw[10:])
    assert e.field == "format" and "format 2" in str(e)
    e = raises(ParseError, store.unpack, raw[:12] + (store.MAX_BODY + 1).to_bytes(4, "big") + raw[16:])
    assert e.field == "length"
    e = raises(ParseError, store.unpack, raw[:-1])
    assert e.field == "body" and "truncated" in str(e)
    e = raises(ParseError, store.unpack, raw[:-1] + bytes([raw[-1] ^ 1]))
    assert e.field == "sha256"
    e = raises(ParseError, store.unpack, raw[:20])
    assert e.field == "header"


def _bad(mutate):
    m = _meta()
    mutate(m)
    return raises(ParseError, store.validate, m)


def test_metadata_errors_name_the_field():
    assert _bad(lambda m: m.pop("pcrs")).field == "pcrs"
    assert _bad(lambda m: m.__setitem__("pcrs", [14, 4])).field == "pcrs"
    assert _bad(lambda m: m.__setitem__("pcrs", [4, 24])).field == "pcrs"
    assert _bad(lambda m: m.__setitem__("pcr_bank", "sha1")).field == "pcr_bank"
    assert _bad(lambda m: m["expected"].pop("14")).field == "expected"
    assert _bad(lambda m: m["expected"].__setitem__("7", H1)).field == "expected"
    assert _bad(lambda m: m["expected"].__setitem__("4", "11" * 31)).field == "expected.4"
    assert _bad(lambda m: m["components"][1].__setitem__("sha256", "xyz")).field == "components[1].sha256"
    assert _bad(lambda m: m["objects"][0].__setitem__("public", "0")).field == "objects[0].public"
    assert _bad(lambda m: m["objects"][0].__setitem__("private", "00" * 1025)).field == "objects[0].private"
    assert _bad(lambda m: m["objects"][0].__setitem__("pin", 1)).field == "objects[0].pin"
    assert _bad(lambda m: m["objects"].append(dict(m["objects"][0]))).field == "objects[1].name"
    assert _bad(lambda m: m.__setitem__("policy", "none")).field == "policy"
    assert _bad(lambda m: m.__setitem__("format", 2)).field == "format"
    assert _bad(lambda m: m.__setitem__("policy", "authorized")).field == "authorized"


def _authorized(m):
    m["policy"] = "authorized"
    m["authorized"] = {"key": "0023", "policy_ref": "", "nv_index": 0x01000A50, "nv_name": "000b" + H1,
                       "signed": [{"image_version": "1.0", "anti_rollback": 1, "expected": dict(m["expected"]),
                                   "components": [], "approved": H1, "r": H1, "s": H2}]}
    return m


def test_authorized_metadata_bounds():
    store.validate(_authorized(_meta()))
    e = _bad(lambda m: _authorized(m)["authorized"]["signed"][0].__setitem__("anti_rollback", 64))
    assert e.field == "authorized.signed[0].anti_rollback"
    e = _bad(lambda m: _authorized(m)["authorized"].__setitem__("nv_index", 0x81000001))
    assert e.field == "authorized.nv_index"
    e = _bad(lambda m: _authorized(m)["authorized"]["signed"][0].__setitem__("r", H1[:62]))
    assert e.field == "authorized.signed[0].r"


def test_release_refuses_a_bad_store_before_touching_the_tpm():
    m = _meta()
    m["objects"][0]["public"] = "zz"
    res = R.release(None, m)  # no TPM at all: validation fails first
    assert isinstance(res, R.StoreFailure) and res.state == "no-credentials" and not res.unsealed
    assert res.status()["state"] == "no-credentials" and res.status()["unsealed"] is False
    assert res.status()["reason"].startswith("sealed store unusable: objects[0].public is not hex")
    res = R.release(None, _meta(), names=["user-secret"])
    assert isinstance(res, R.StoreFailure) and res.reason == "no sealed object named user-secret"


def test_canonical_json_is_compact_and_sorted():
    import json
    v = {"b": [1, True, None, "x\"y"], "a": {"z": False, "k": "\u00e9"}}
    text = store.canonical_json(v)
    assert text.startswith('{"a":{"k":') and text.endswith(',"z":false},"b":[1,true,null,"x\\"y"]}')
    assert json.loads(text) == v
    raises(ValueError, store.canonical_json, {"f": 1.5})


def test_version_operand_and_revocation_bits():
    assert flows.version_operand(0) == b"\x00" * 7 + b"\x01"
    assert flows.version_operand(9) == b"\x00" * 6 + b"\x02\x00"
    assert flows.version_operand(63) == b"\x80" + b"\x00" * 7
    raises(ValueError, flows.version_operand, 64)
    assert flows.revoke_bits(0) == 0 and flows.revoke_bits(3) == 0b111


def test_object_policies():
    exp = {4: b"\x11" * 32, 14: b"\x22" * 32}
    assert flows.object_policy("pcr", False, exp) == policy.seal_policy(exp)
    assert flows.object_policy("pcr", True, exp) == policy.seal_policy(exp, with_pin=True)
    assert flows.object_policy(_meta(), True) == policy.seal_policy(exp, with_pin=True)
    # Part 3 §23.9: args = H(operandB || offset || operation), then H(prev || CC || args || Name)
    name = b"\x00\x0b" + b"\x33" * 32
    args = compat.sha256(flows.version_operand(2) + b"\x00\x00" + b"\x00\x0b")
    want = compat.sha256(policy.policy_pcr(exp) + b"\x00\x00\x01\x49" + args + name)
    assert flows.approved_policy(exp, name, 2) == want


def test_pcr_and_component_diagnosis():
    exp = {4: b"\x11" * 32, 14: b"\x22" * 32}
    assert diagnose.pcr_differences(exp, dict(exp)) == []
    d = diagnose.pcr_differences(exp, {4: b"\x11" * 32, 14: b"\x33" * 32})
    assert d == [{"pcr": 14, "expected": "22" * 32, "actual": "33" * 32}]
    assert diagnose.pcr_differences(exp, None)[0]["actual"] is None
    ref = _meta()["components"]
    meas = [{"name": "phone-app", "version": "1.0", "sha256": H2}, {"name": "evil", "version": "1", "sha256": H1}]
    got = diagnose.component_differences(ref, meas)
    assert [(x["name"], x["status"]) for x in got] == [("phone-app", "differs"), ("evil", "extra"),
                                                       ("sip-media", "missing")]
    swapped = [{"name": "sip-media", "version": "1.0", "sha256": H2}, {"name": "phone-app", "version": "1.0", "sha256": H1}]
    assert diagnose.component_differences(ref, swapped) == [{"name": "sip-media,phone-app", "status": "out-of-order"}]
    assert diagnose.component_differences(ref, None) == []
    text = diagnose.reason_text("TPM_RC_POLICY_FAIL at TPM2_Unseal", d, got[:1])
    assert text == ("TPM refused the sealed credentials (TPM_RC_POLICY_FAIL at TPM2_Unseal); PCR 14 "
                    "differs from the sealed policy; component phone-app differs from the reference")


def test_pcr12_difference_is_named_as_a_command_line_override():
    # issue 9: a boot entry's LoadOptions replace the UKI's .cmdline and land in PCR 12 only
    exp = {4: b"\x11" * 32, 12: b"\x00" * 32, 14: b"\x22" * 32}
    d = diagnose.pcr_differences(exp, {4: b"\x11" * 32, 12: b"\x5a" * 32, 14: b"\x22" * 32})
    assert [x["pcr"] for x in d] == [12]
    text = diagnose.reason_text("TPM_RC_VALUE at TPM2_PolicyAuthorize", d, [])
    assert text == ("TPM refused the sealed credentials (TPM_RC_VALUE at TPM2_PolicyAuthorize); PCR 12 "
                    "differs from the sealed policy; kernel command line overridden (PCR 12)")


def test_released_wipes_and_never_shows_secrets():
    a = bytearray(b"hunter2-secret")
    r = R.Released({"sip-account": a})
    assert repr(r) == "Released(sip-account)" and "hunter2" not in str(r.status())
    r.wipe()
    assert a == bytearray(len(a)) and r.names() == []


def test_nv_constants():
    # Part 2 §13.4: TPM_NT_BITS in bits 4..7; AUTHWRITE bit 2, AUTHREAD bit 18, OWNERREAD bit
    # 17, NO_DA bit 25, POLICY_DELETE bit 10, PLATFORMCREATE bit 30
    from firmware.secrets import rollback
    assert rollback.BASE_ATTRIBUTES == 0x20 | 0x4 | 0x40000 | 0x20000 | 0x2000000
    assert rollback.ATTRIBUTES == rollback.BASE_ATTRIBUTES | 0x400 | 0x40000000
    assert rollback.NO_DELETE_POLICY == compat.digest("sha256", b"trusted-phone/anti-rollback: never deleted")
    assert C.TPM_CC_PolicyNV == 0x149 and C.TPM_CC_PolicyAuthorize == 0x16A


def test_hook_merge_status_for_the_console():
    from firmware.secrets import hook
    hook.forget()
    st = hook.merge_status({"state": "running", "unsealed": False})
    assert st["unsealed"] is False and st["credentials_state"] == "locked" and st["state"] == "running"
    hook._last = R.IntegrityFailure("TPM refused the sealed credentials (x); PCR 14 differs",
                                    [{"pcr": 14, "expected": H1, "actual": H2}]).status()
    st = hook.merge_status({"state": "running"})
    assert st["state"] == "integrity-failed" and st["reason"] == st["unsealed_reason"]
    assert st["pcrs_differ"][0]["pcr"] == 14
    assert hook.merge_status({"state": "refused", "reason": "r"})["state"] == "refused"
    hook._last = {"unsealed": True, "state": "unsealed", "secrets": ["sip-account"], "release_ms": 5}
    st = hook.merge_status({"state": "running", "unsealed_reason": "old"})
    assert st == {"state": "running", "unsealed": True, "credentials_state": "unsealed", "release_ms": 5}
    hook.forget()


def test_hook_sip_account():
    from firmware.secrets import hook
    hook.forget()
    assert hook.sip_account() is None
    buf = bytearray(b'{"password":"pw-1","username":"phone1"}')
    hook._released = R.Released({"sip-account": buf})
    assert hook.sip_account() == ("phone1", "pw-1")
    hook._released = R.Released({"sip-account": bytearray(b"not json")})
    assert hook.sip_account() is None
    hook._released = R.Released({"sip-account": buf})
    hook.forget()
    assert buf == bytearray(len(buf)) and hook.sip_account() is None
