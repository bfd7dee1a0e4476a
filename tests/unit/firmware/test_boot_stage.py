# firmware.boot.stage: the bundle's identity (board, version, anti-rollback counter) and then every
# component found are measured (log event + PCR extend, then the separator) before anything is
# verified; the bundle runs only when the Ed25519 signature and the
# contents match the signed manifest, and each refusal names what is wrong. The bundle below is
# signed with the RFC 8032 §7.1 TEST 1 key (signatures made with `cryptography`; Ed25519 is
# deterministic); TEST 2's key stands in for an attacker's key.
from firmware import compat
from firmware.boot import manifest as manifest_mod
from firmware.boot import signature, stage
from firmware.errors import ParseError
from firmware.eventlog import parse_log, replay
from firmware.eventlog.component import decode_bundle, decode_component
from tests.unit.firmware.check import raises, unhex
from tests.unit.firmware.test_boot_signature import TEST1_PEM
from tests.unit.firmware.test_boot_ustar import make_ustar

COMPONENTS = [
    ("phone-app", b"print('phone app')\n"),
    ("sip-media", b"# sip and media\n"),
    ("device-config", b'{"account":"phone1"}'),
    ("ca-bundle", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
]
MANIFEST = (
    b'{"anti_rollback_counter":7,"board":"qemu-x86_64","bundle_version":"1.2.3","components":['
    b'{"name":"phone-app","pcr":14,"sha256":"81668b37c0cbbc5f45939ca9b6b06d8266409d8ce6179b5556fe98268a9a1397","size":19,"version":"1.2.3"},'
    b'{"name":"sip-media","pcr":14,"sha256":"1185b0294e9728b75d128a553c38ed531d3c2407b1a18c41e45b890fe4dc9dc9","size":16,"version":"1.2.3"},'
    b'{"name":"device-config","pcr":14,"sha256":"7948995c4cbdb7ef43cc7a51e744ce7a6f32163e2881a61b69ce430e7e5a2d5f","size":20,"version":"1.2.3"},'
    b'{"name":"ca-bundle","pcr":14,"sha256":"8010bfcee1842b2a4ce8f67c3e9455f0188f7a15bf39ec61a26feb75cd785821","size":59,"version":"1.2.3"}'
    b'],"format_version":1}')
SIG_VENDOR = unhex("cfb066f6fa0f30c686be44cdfd929fb030ab66f32a3739b1552e39239f847e45"
                   "8282dea8ba552fa73ab59ad0e7d21392995197897f3b6661b20678e6c3a5f50d")
SIG_OTHER_KEY = unhex("a0534f8cced3bf5a36b354e159855731ae3cb919b274d2b6f400f118f271a296"
                      "4a9eabfb6269772b427e9d1e382697c382b7bddb28dd54860103dfae2e781900")
VERIFY = signature.load_public_key(TEST1_PEM)
SEPARATOR_SHA256 = compat.sha256(b"\x00\x00\x00\x00")
# The bundle event of MANIFEST, byte for byte (docs/eventlog.md "The bundle event"): taggedEventID
# "PBUN", size 44, magic, u16 11 "qemu-x86_64", u16 5 "1.2.3", u64 7 (all little-endian).
BUNDLE_EVENT = (b"PBUN" + b"\x2c\x00\x00\x00" + b"phone-bundle\x00\x00\x00\x00"
                + b"\x0b\x00qemu-x86_64" + b"\x05\x001.2.3" + b"\x07" + b"\x00" * 7)
NO_MANIFEST_EVENT = (b"PBUN" + b"\x1e\x00\x00\x00" + b"phone-bundle\x00\x00\x00\x00"
                     + b"\x01\x00?" + b"\x01\x00?" + b"\x00" * 8)


def bundle(components=COMPONENTS, manifest=MANIFEST, sig=SIG_VENDOR):
    head = [("manifest.json", manifest)] if manifest is not None else []
    if sig is not None:
        head.append(("manifest.sig", sig))
    return make_ustar(head + list(components))


def run(image, verify=VERIFY, **kw):
    extends = []

    def extend(pcr, digests):
        extends.append((pcr, dict(digests)))

    out = stage.measure_and_verify(image, extend, verify, **kw)
    return out, extends


def check_measured(out, extends, names, bundle_event=BUNDLE_EVENT):
    """The log lists the bundle event, exactly `names`, then the separator; the extends are the
    log's digests, so replaying the log gives what the TPM would hold. Returns the component
    events."""
    log = parse_log(out.log.to_bytes())
    events = [e for e in log.events if e.pcr == 14]
    assert events[0].type_name == "EV_EVENT_TAG" and events[0].data == bundle_event
    assert events[0].digest("sha256") == compat.sha256(bundle_event)  # the identity is measured
    assert [decode_component(e.data)[0] for e in events[1:-1]] == names
    assert events[-1].type_name == "EV_SEPARATOR"
    assert [(p, d["sha256"]) for p, d in extends] == [(14, e.digest("sha256")) for e in events]
    want = b"\x00" * 32
    for _, d in extends:
        want = compat.sha256(want + d["sha256"])
    assert replay(log, banks=("sha256",))["sha256"][14] == want
    return events[1:]


def test_good_bundle_is_measured_then_verified():
    out, extends = run(bundle())
    assert out.state == stage.STATE_VERIFIED and out.reason is None
    events = check_measured(out, extends, [n for n, _ in COMPONENTS])
    for (name, data), ev in zip(COMPONENTS, events):
        assert ev.digest("sha256") == compat.sha256(data)
        assert decode_component(ev.data) == (name, "1.2.3")
    assert out.components == COMPONENTS
    assert out.manifest["bundle_version"] == "1.2.3"
    js = out.to_json()
    assert js["state"] == "verified" and js["anti_rollback_counter"] == 7
    assert js["components"][0]["sha256"] == compat.sha256(COMPONENTS[0][1]).hex()
    assert js["bundle_event"] == {"board": "qemu-x86_64", "bundle_version": "1.2.3",
                                  "anti_rollback_counter": 7,
                                  "sha256": compat.sha256(BUNDLE_EVENT).hex()}
    assert decode_bundle(BUNDLE_EVENT) == ("qemu-x86_64", "1.2.3", 7)


def test_rollback_with_identical_components_changes_pcr14():
    # An older, validly signed bundle whose components are byte-identical: only the bundle event
    # differs, so PCR 14 (and any policy on it) differs. The signature is not checked here.
    older = MANIFEST.replace(b'"anti_rollback_counter":7', b'"anti_rollback_counter":6')
    _, new = run(bundle(), verify=None)
    _, old = run(bundle(manifest=older), verify=None)
    assert new[1:] == old[1:]
    assert new[0] != old[0]
    assert old[0][1]["sha256"] == compat.sha256(BUNDLE_EVENT.replace(b"\x07\x00", b"\x06\x00"))


def test_all_banks_are_extended_with_one_log():
    out, extends = run(bundle(), banks=("sha1", "sha256"))
    assert out.state == stage.STATE_VERIFIED
    assert sorted(extends[0][1]) == ["sha1", "sha256"]
    assert extends[0][1]["sha1"] == compat.sha1(BUNDLE_EVENT)
    assert extends[1][1]["sha1"] == compat.sha1(COMPONENTS[0][1])
    assert extends[-1][1]["sha256"] == SEPARATOR_SHA256


def test_changed_byte_resigned_by_other_key_is_refused_but_measured():
    comps = [COMPONENTS[0], ("sip-media", b"# sip and media!\n")] + COMPONENTS[2:]
    out, extends = run(bundle(comps, sig=SIG_OTHER_KEY))
    assert out.state == stage.STATE_REFUSED
    assert out.reason == "manifest signature does not verify with the vendor key"
    events = check_measured(out, extends, [n for n, _ in comps])
    assert events[1].digest("sha256") == compat.sha256(b"# sip and media!\n")


def test_changed_byte_with_vendor_signature_names_the_component():
    comps = [COMPONENTS[0], ("sip-media", b"# sip and mediA\n")] + COMPONENTS[2:]
    out, extends = run(bundle(comps))
    assert out.reason == "component 'sip-media': sha256 differs from the signed manifest"
    check_measured(out, extends, [n for n, _ in comps])


def test_removed_added_reordered_components():
    out, extends = run(bundle(COMPONENTS[:2] + COMPONENTS[3:]))
    assert out.reason == "component 'device-config' of the signed manifest is missing"
    check_measured(out, extends, ["phone-app", "sip-media", "ca-bundle"])

    out, extends = run(bundle(COMPONENTS + [("extra", b"rootkit")]))
    assert out.reason == "component 'extra' is not in the signed manifest"
    events = check_measured(out, extends, [n for n, _ in COMPONENTS] + ["extra"])
    assert decode_component(events[4].data) == ("extra", stage.UNLISTED)

    swapped = [COMPONENTS[1], COMPONENTS[0]] + COMPONENTS[2:]
    out, extends = run(bundle(swapped))
    assert out.reason.startswith("components out of order: found sip-media,phone-app,")
    check_measured(out, extends, ["sip-media", "phone-app", "device-config", "ca-bundle"])

    out, _ = run(bundle(COMPONENTS + [COMPONENTS[0]]))
    assert out.reason == "component 'phone-app' appears twice in the bundle"


def test_unsigned_and_missing_key():
    out, extends = run(bundle(sig=None))
    assert out.reason == "unsigned bundle: no manifest.sig after the manifest"
    check_measured(out, extends, [n for n, _ in COMPONENTS])
    out, extends = run(bundle(manifest=None, sig=None))
    assert out.reason == "unsigned bundle: no manifest.json at the start of the archive"
    check_measured(out, extends, [n for n, _ in COMPONENTS], NO_MANIFEST_EVENT)
    out, _ = run(bundle(), verify=None)
    assert out.reason == "no vendor public key in this loader: cannot verify the bundle"
    assert out.state == stage.STATE_REFUSED


def test_verifier_exception_fails_closed():
    def broken(msg, sig):
        raise RuntimeError("no entropy")

    out, _ = run(bundle(), verify=broken)
    assert out.state == stage.STATE_REFUSED and out.reason == "signature check failed: no entropy"


def extends_of(image, **kw):
    return run(image, **kw)[1]


def test_rollback_and_board():
    out, _ = run(bundle(), min_counter=8)
    assert out.reason == "anti-rollback: bundle counter 7 is below this device's floor 8"
    assert out.manifest["bundle_version"] == "1.2.3"
    check_measured(out, extends_of(bundle(), min_counter=8), [n for n, _ in COMPONENTS])
    out, _ = run(bundle(), min_counter=0, floor_error="NV index 0x01000a50: TpmError: x")
    assert out.reason == "anti-rollback floor unreadable: NV index 0x01000a50: TpmError: x"
    assert out.state == stage.STATE_REFUSED
    # a bad signature is named before the floor: the floor matters only for genuine bundles
    out, _ = run(bundle(sig=SIG_OTHER_KEY), min_counter=8)
    assert out.reason == "manifest signature does not verify with the vendor key"
    out, _ = run(bundle(), min_counter=7, board="qemu-x86_64")
    assert out.state == stage.STATE_VERIFIED
    out, _ = run(bundle(), board="other-board")
    assert out.reason == "bundle is for board 'qemu-x86_64', this is 'other-board'"


def test_corrupt_archive_measures_what_came_before():
    image = bytearray(bundle())
    # Corrupt the header of the third component (after manifest, sig, phone-app, sip-media).
    off = 0
    for data in (MANIFEST, SIG_VENDOR, COMPONENTS[0][1], COMPONENTS[1][1]):
        off += 512 + (len(data) + 511) // 512 * 512
    image[off + 148] ^= 0x01
    out, extends = run(bytes(image))
    assert out.reason.startswith("bundle archive malformed: header checksum")
    check_measured(out, extends, ["phone-app", "sip-media"])


def test_empty_partition_measures_only_the_placeholder_bundle_and_separator():
    out, extends = run(b"")
    assert out.state == stage.STATE_REFUSED
    assert out.reason.startswith("bundle archive malformed")
    assert extends == [(14, {"sha256": compat.sha256(NO_MANIFEST_EVENT)}),
                       (14, {"sha256": SEPARATOR_SHA256})]
    raises(ValueError, out.log.add_component, "late", "1", b"x")  # nothing after the separator


def test_tpm_failure_propagates():
    def extend(pcr, digests):
        raise OSError("TPM gone")

    e = raises(OSError, stage.measure_and_verify, bundle(), extend, VERIFY)
    assert "TPM gone" in str(e)


def test_manifest_parse_errors_name_the_field():
    e = raises(ParseError, manifest_mod.parse, b"[1]")
    assert e.field == "manifest"
    e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(b'"size":19', b'"size":-1'))
    assert e.field == "components[0].size"
    e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(b'"format_version":1', b'"format_version":2'))
    assert e.field == "format_version"
    e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(b'"sha256":"81', b'"sha256":"zz'))
    assert e.field == "components[0].sha256"
    e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(b'"name":"sip-media"', b'"name":"phone-app"'))
    assert e.field == "components[1].name" and "duplicate" in str(e)
    e = raises(ParseError, manifest_mod.parse, b"\xff")
    assert e.field == "manifest"
    e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(b'"pcr":14', b'"pcr":true', 1))
    assert e.field == "components[0].pcr"
    e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(
        b'"anti_rollback_counter":7', b'"anti_rollback_counter":18446744073709551616'))
    assert e.field == "anti_rollback_counter"


def test_component_names_are_single_path_segments():
    # issue 9: a name is a file name under components/; '../x', 'a/b', '' and NUL are refused
    cases = ((b'"../../etc/passwd"', "component name '../../etc/passwd' is not a single path segment ('/' not allowed)"),
             (b'"a/b"', "component name 'a/b' is not a single path segment ('/' not allowed)"),
             (b'".."', "component name '..' is not a single path segment"),
             (b'"."', "component name '.' is not a single path segment"),
             (b'"a\\\\b"', "component name 'a\\\\b' is not a single path segment ('\\\\' not allowed)"),
             (b'"ph\\u0000one"', "component name 'ph\\x00one' is not a single path segment ('\\x00' not allowed)"),
             (b'""', "must be a string of 1..255 bytes"))
    for name, msg in cases:
        e = raises(ParseError, manifest_mod.parse, MANIFEST.replace(b'"phone-app"', name, 1))
        assert e.field == "components[0].name", (name, e.field)
        assert str(e) == msg + " (field components[0].name)", str(e)
    assert manifest_mod.parse(MANIFEST)["components"][0]["name"] == "phone-app"
