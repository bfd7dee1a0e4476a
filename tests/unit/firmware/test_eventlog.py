# firmware.eventlog: parser, replay, writer, decoders. Runs under pytest and the `micropython` command.
# Logs are built with the writer or byte by byte from the layouts in the TCG PC Client Platform
# Firmware Profile (PFP) spec §10 (all integers little-endian).
import struct

from firmware import compat
from firmware.errors import ParseError
from firmware.eventlog import PhoneLog, ParsedLog, decode_component, parse_log, replay
from firmware.eventlog import types as T
from firmware.eventlog.component import encode_component
from firmware.eventlog.decode import describe, efi_variable
from firmware.eventlog.replayer import ReplayError, compare_replay, verify_replay
from firmware.eventlog.writer import pcr_event2, spec_id_event
from tests.unit.firmware.check import raises, unhex

SHA1_0 = b"\x00" * 20
SHA256_0 = b"\x00" * 32


def _log(*events, banks=("sha1", "sha256")):
    return spec_id_event(banks) + b"".join(events)


def _ev(pcr, etype, data, banks=("sha1", "sha256"), fill=None):
    digests = {}
    for b in banks:
        digests[b] = compat.digest(b, data) if fill is None else bytes([fill]) * len(
            compat.digest(b, b""))
    return pcr_event2(pcr, etype, digests, data, banks)


def test_spec_id_header_bytes():
    # PFP §10.4.5.1: TCG_PCClientPCREvent {pcrIndex 0, EV_NO_ACTION, 20 zero bytes, size} carrying
    # "Spec ID Event03\0", platformClass 0, version 2.0 errata 0, uintnSize 2, 2 algorithms
    # (sha1/20, sha256/32), vendorInfoSize 0.
    expected = unhex(
        "00000000 03000000" + "00" * 20 + "25000000"
        "5370656320494420 4576656e74303300"
        "00000000 00 02 00 02 02000000 0400 1400 0b00 2000 00")
    assert spec_id_event(("sha1", "sha256")) == expected
    log = parse_log(expected)
    assert log.events == []
    h = log.header
    assert h.banks == ("sha1", "sha256")
    assert h.algorithms == ((0x4, "sha1", 20), (0xB, "sha256", 32))
    assert h.spec_version == (2, 0) and h.uintn_size == 2 and h.platform_class == 0
    assert h.digest_size("sha256") == 32


def test_event2_layout_and_fields():
    # PFP §10.2.2 TCG_PCR_EVENT2: pcrIndex, eventType, TPML_DIGEST_VALUES{count, TPMT_HA...}, size
    d1 = bytes(range(20))
    d256 = bytes(range(32))
    raw = pcr_event2(7, T.EV_SEPARATOR, {"sha1": d1, "sha256": d256}, b"\x00" * 4,
                     ("sha1", "sha256"))
    assert raw == (unhex("07000000 04000000 02000000 0400") + d1 + unhex("0b00") + d256 +
                   unhex("04000000 00000000"))
    log = parse_log(_log(raw))
    ev = log.events[0]
    assert (ev.number, ev.pcr, ev.type, ev.data) == (1, 7, T.EV_SEPARATOR, b"\x00" * 4)
    assert ev.offset == len(spec_id_event(("sha1", "sha256")))
    assert ev.digests == {"sha1": d1, "sha256": d256}
    assert ev.digest("sha256") == d256
    assert ev.type_name == "EV_SEPARATOR"


def test_digests_in_any_order():
    # TPML_DIGEST_VALUES need not follow the header's order; parsing maps by algorithm ID.
    d1, d256 = b"\x11" * 20, b"\x22" * 32
    raw = pcr_event2(3, T.EV_POST_CODE, {"sha1": d1, "sha256": d256}, b"x", ("sha256", "sha1"))
    ev = parse_log(_log(raw)).events[0]
    assert ev.digests == {"sha1": d1, "sha256": d256}


def test_replay_extends_in_order_per_bank():
    a = _ev(4, T.EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
    b = _ev(4, T.EV_SEPARATOR, b"\x00\x00\x00\x00")
    r = replay(parse_log(_log(a, b)))
    for bank, size in (("sha1", 20), ("sha256", 32)):
        # TPM 2.0 Part 1 §17.6.4: PCR := H(PCR || digest)
        v = b"\x00" * size
        for data in (b"Calling EFI Application from Boot Option", b"\x00\x00\x00\x00"):
            v = compat.digest(bank, v + compat.digest(bank, data))
        assert r[bank][4] == v
        assert r[bank][0] == b"\x00" * size
        assert r[bank][17] == b"\xff" * size  # DRTM PCRs reset to all ones in a static boot
        assert sorted(r[bank]) == list(range(24))


def test_no_action_not_extended_and_startup_locality():
    # PFP §10.4.5.3 TCG_EfiStartupLocalityEvent: "StartupLocality\0" + UINT8 locality, EV_NO_ACTION
    # in PCR 0 with zero digests; PCR 0 then starts at 00..03 instead of zeros.
    loc = _ev(0, T.EV_NO_ACTION, b"StartupLocality\x00\x03", fill=0)
    crtm = _ev(0, T.EV_S_CRTM_VERSION, b"\x00\x00")
    log = parse_log(_log(loc, crtm))
    assert log.startup_locality == 3
    r = replay(log)
    start = b"\x00" * 31 + b"\x03"
    assert r["sha256"][0] == compat.sha256(start + compat.sha256(b"\x00\x00"))
    # Other EV_NO_ACTION events (e.g. SP800-155) are skipped even with non-zero digests.
    other = _ev(2, T.EV_NO_ACTION, b"SP800-155 Event\x00" + b"\x00" * 8, fill=0x55)
    r2 = replay(parse_log(_log(other)))
    assert r2["sha256"][2] == SHA256_0


def test_startup_locality_rules():
    loc = _ev(0, T.EV_NO_ACTION, b"StartupLocality\x00\x03", fill=0)
    crtm = _ev(0, T.EV_S_CRTM_VERSION, b"\x00\x00")
    e = raises(ParseError, parse_log, _log(crtm, loc))
    assert e.field == "event[2].StartupLocality"
    e = raises(ParseError, parse_log, _log(loc, loc))
    assert "repeated" in str(e)
    bad = _ev(1, T.EV_NO_ACTION, b"StartupLocality\x00\x03", fill=0)
    assert raises(ParseError, parse_log, _log(bad)).field == "event[1].StartupLocality"


def test_unknown_event_type_kept_opaque():
    raw = _ev(8, 0x7777, b"\xde\xad\xbe\xef")
    ev = parse_log(_log(raw)).events[0]
    assert ev.type == 0x7777 and ev.data == b"\xde\xad\xbe\xef"
    assert ev.type_name == "EV_UNKNOWN_0x00007777"
    assert describe(ev.type, ev.data) == "4 bytes"
    assert replay(parse_log(_log(raw)))["sha1"][8] == compat.sha1(SHA1_0 + compat.sha1(
        b"\xde\xad\xbe\xef"))


def test_event_type_constants():
    # PFP §10.4.1 Table "Event Types"
    assert T.EV_POST_CODE == 1 and T.EV_NO_ACTION == 3 and T.EV_SEPARATOR == 4
    assert T.EV_EVENT_TAG == 6 and T.EV_IPL == 0xD
    assert T.EV_EFI_BOOT_SERVICES_APPLICATION == 0x80000003 and T.EV_EFI_ACTION == 0x80000007
    assert T.EV_EFI_VARIABLE_AUTHORITY == 0x800000E0
    assert T.event_type_name(0x80000002) == "EV_EFI_VARIABLE_BOOT"


def test_phone_log_writer_round_trip():
    log = PhoneLog(("sha1", "sha256"))
    d = log.add_component("stage-loader", "1.4.2", b"loader code")
    assert d == {"sha1": compat.sha1(b"loader code"), "sha256": compat.sha256(b"loader code")}
    log.add_component("sip-config", "2026.11", b"cfg")
    sep = log.close()
    assert sep["sha256"] == compat.sha256(b"\x00\x00\x00\x00")
    assert raises(ValueError, log.add_component, "late", "1", b"x")
    parsed = parse_log(log.to_bytes())
    assert [e.pcr for e in parsed.events] == [14, 14, 14]
    assert [e.type for e in parsed.events] == [T.EV_EVENT_TAG, T.EV_EVENT_TAG, T.EV_SEPARATOR]
    assert decode_component(parsed.events[0].data) == ("stage-loader", "1.4.2")
    assert parsed.events[1].describe() == "component sip-config 2026.11"
    assert parsed.events[2].describe() == "separator"
    v = SHA256_0
    for data in (b"loader code", b"cfg", b"\x00\x00\x00\x00"):
        v = compat.sha256(v + compat.sha256(data))
    assert replay(parsed)["sha256"][14] == v


def test_component_payload_bytes():
    # TCG_PCClientTaggedEvent {taggedEventID "PCOM", size} + "phone-component\0" + u16 len + name
    # + u16 len + version (docs/eventlog.md)
    raw = encode_component("app", "1.0")
    assert raw == (b"PCOM" + struct.pack("<I", 16 + 5 + 5) + b"phone-component\x00" +
                   b"\x03\x00app" + b"\x03\x001.0")
    assert decode_component(raw) == ("app", "1.0")
    assert raises(ValueError, encode_component, "", "1")
    assert raises(ValueError, encode_component, "a" * 256, "1")
    e = raises(ParseError, decode_component, raw[:-1], 100)
    assert e.field == "TaggedEvent.taggedEventDataSize" and e.offset == 104
    e = raises(ParseError, decode_component, raw[:8 + 16] + b"\x09\x00app" + b"\x03\x001.0"[:0])
    assert e.field == "TaggedEvent.taggedEventDataSize"
    body = b"phone-component\x00" + b"\x09\x00app"
    e = raises(ParseError, decode_component, b"PCOM" + struct.pack("<I", len(body)) + body)
    assert e.field == "component.name.size"


def test_efi_variable_decoder():
    # UEFI_VARIABLE_DATA: VariableName GUID, UnicodeNameLength (chars), VariableDataLength,
    # UnicodeName (UTF-16LE), VariableData; EFI_GLOBAL_VARIABLE 8be4df61-93ca-11d2-aa0d-00e098032b8c
    guid = unhex("61dfe48bca93d211aa0d00e098032b8c")
    data = guid + struct.pack("<QQ", 10, 1) + b"".join(bytes((ord(c), 0)) for c in "SecureBoot") + b"\x00"
    assert efi_variable(data) == ("8be4df61-93ca-11d2-aa0d-00e098032b8c", "SecureBoot", b"\x00")
    assert describe(T.EV_EFI_VARIABLE_DRIVER_CONFIG, data) == \
        "variable 8be4df61-93ca-11d2-aa0d-00e098032b8c SecureBoot (1 bytes)"
    assert describe(T.EV_EFI_VARIABLE_BOOT, data[:40]).startswith("undecodable payload")
    assert describe(T.EV_EFI_ACTION, b"Exit Boot Services Invocation") == \
        "'Exit Boot Services Invocation'"


def test_verify_replay_names_failed_pcrs():
    log = parse_log(_log(_ev(4, T.EV_IPL, b"a"), _ev(5, T.EV_IPL, b"b")))
    good = replay(log)
    actual = {"sha256": {4: good["sha256"][4], 5: b"\x01" * 32}}
    e = raises(ReplayError, verify_replay, log, actual)
    assert e.pcrs == [("sha256", 5)]
    assert compare_replay(good, {"sha256": {4: good["sha256"][4]}}) == []
    assert verify_replay(log, {"sha1": {4: good["sha1"][4]}})["sha1"][4] == good["sha1"][4]


def test_parsed_log_is_unverified_type():
    log = parse_log(_log())
    assert isinstance(log, ParsedLog)
    assert log.size == len(_log())


def test_image_and_blob_decoders_reject_bad_lengths():
    from firmware.eventlog.decode import firmware_blob, image_load

    assert raises(ParseError, firmware_blob, b"\x00" * 15).field == "UEFI_PLATFORM_FIRMWARE_BLOB"
    e = raises(ParseError, image_load, struct.pack("<QQQQ", 0, 0, 0, 5) + b"\x00" * 4)
    assert e.field == "UEFI_IMAGE_LOAD_EVENT.LengthOfDevicePath" and e.offset == 24
    assert describe(T.EV_EFI_BOOT_SERVICES_APPLICATION, b"\x00" * 8).startswith("undecodable")


def test_measure_component_and_add_measured_agree():
    from firmware.eventlog import measure_component

    digests, event = measure_component("app", "2.0", b"app bytes", ("sha1", "sha256"))
    assert digests == {"sha1": compat.sha1(b"app bytes"), "sha256": compat.sha256(b"app bytes")}
    a = PhoneLog(("sha1", "sha256"))
    a.add_component("app", "2.0", b"app bytes")
    b = PhoneLog(("sha1", "sha256"))
    assert b.add_measured("app", "2.0", digests) == digests
    assert a.to_bytes() == b.to_bytes() == spec_id_event(("sha1", "sha256")) + event
    assert raises(ValueError, PhoneLog, ())
    assert raises(ValueError, PhoneLog, ("md5",))
    assert raises(ValueError, b.add_measured, "x", "1", {"sha1": b"\x00" * 19,
                                                        "sha256": b"\x00" * 32})
    b.close()
    assert raises(ValueError, b.close)
    assert raises(ValueError, b.add_measured, "x", "1", digests)


def test_bundle_payload_bytes():
    # TCG_PCClientTaggedEvent {taggedEventID "PBUN", size} + "phone-bundle\0\0\0\0" + u16 len +
    # board + u16 len + version + u64 counter (docs/eventlog.md "The bundle event")
    from firmware.eventlog.component import bundle_or_none, decode_bundle, encode_bundle
    from firmware.eventlog.writer import measure_bundle
    raw = encode_bundle("b", "1.0", 258)
    assert raw == (b"PBUN" + struct.pack("<I", 16 + 3 + 5 + 8) + b"phone-bundle\x00\x00\x00\x00"
                   + b"\x01\x00b" + b"\x03\x001.0" + b"\x02\x01" + b"\x00" * 6)
    assert decode_bundle(raw) == ("b", "1.0", 258)
    assert bundle_or_none(raw) == ("b", "1.0", 258)
    assert bundle_or_none(encode_component("b", "1.0")) is None
    digests, ev = measure_bundle("b", "1.0", 258, ("sha1", "sha256"))
    assert digests == {"sha1": compat.sha1(raw), "sha256": compat.sha256(raw)}
    parsed = parse_log(spec_id_event(("sha1", "sha256")) + ev)
    assert parsed.events[0].type == T.EV_EVENT_TAG and parsed.events[0].data == raw
    assert describe(T.EV_EVENT_TAG, raw) == "bundle b 1.0 anti-rollback counter 258"
    assert raises(ValueError, encode_bundle, "", "1", 0)
    assert raises(ValueError, encode_bundle, "b", "v" * 256, 0)
    assert raises(ValueError, encode_bundle, "b", "1", -1)
    assert raises(ValueError, encode_bundle, "b", "1", 1 << 64)
    e = raises(ParseError, decode_bundle, raw[:-1], 100)
    assert e.field == "TaggedEvent.taggedEventDataSize" and e.offset == 104
    short = raw[:-1]
    short = short[:4] + struct.pack("<I", len(short) - 8) + short[8:]
    e = raises(ParseError, decode_bundle, short, 100)
    assert e.field == "bundle.anti_rollback_counter" and e.offset == 100 + 24 + 3 + 5
    bad = raw[:8] + b"phone-bundlX" + raw[20:]
    e = raises(ParseError, decode_bundle, bad)
    assert e.field == "bundle.magic" and e.offset == 8
    body = b"phone-bundle\x00\x00\x00\x00" + b"\x09\x00b"
    e = raises(ParseError, decode_bundle, b"PBUN" + struct.pack("<I", len(body)) + body)
    assert e.field == "bundle.board.size"
    e = raises(ParseError, bundle_or_none, b"PBUN" + struct.pack("<I", 99))
    assert e.field == "TaggedEvent.taggedEventDataSize"


def test_phone_log_bundle_event_first():
    log = PhoneLog(("sha256",))
    d = log.add_bundle("qemu-x86_64", "0.1.0", 1)
    log.add_component("app", "0.1.0", b"app")
    log.close()
    assert raises(ValueError, log.add_bundle, "qemu-x86_64", "0.1.0", 1)
    parsed = parse_log(log.to_bytes())
    assert parsed.events[0].digest("sha256") == d["sha256"]
    assert decode_component(parsed.events[1].data) == ("app", "0.1.0")
