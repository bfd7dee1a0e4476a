# The UKI package (firmware/update/uki_package.py) and its delta payload (firmware/update/
# uki_delta.py), byte-exact: a hand-written delta against a 1540-byte base, a manifest signed with
# the RFC 8032 §7.1 TEST 1 key over the domain-separated message (signatures made once with
# `cryptography`; Ed25519 is deterministic), and every hostile delta or package refused with a
# typed error naming what is wrong. Runs under pytest and micropython.

from firmware import compat
from firmware.boot import signature, stage
from firmware.update import uki_delta as D
from firmware.update import uki_package as U
from tests.unit.firmware.check import raises, unhex
from tests.unit.firmware.test_boot_signature import TEST1_PEM
from tests.unit.firmware.test_boot_stage import MANIFEST as BUNDLE_MANIFEST
from tests.unit.firmware.test_boot_stage import SIG_VENDOR as BUNDLE_SIG
from tests.unit.firmware.test_boot_ustar import make_ustar

BASE = bytes(range(256)) * 4 + b"B" * 512 + b"tail"
TARGET = BASE[:512] + b"new" + BASE[512:1024] + b"tail"
BASE_SHA = unhex("a73a2686b95b6bca92c8d57c9c0ae5c2c17b40a28aae96a0d0abd51e368fda49")
# header: magic, format 1, base size 1540, base sha256, target size 1031; then the ops
DELTA = (b"UKIDELTA" + unhex("00000001") + unhex("0000000000000604") + BASE_SHA
         + unhex("0000000000000407")
         + unhex("01 0000000000000000 00000200")      # COPY base[0:512]
         + unhex("02 00000003") + b"new"              # DATA "new"
         + unhex("01 0000000000000200 00000200")      # COPY base[512:1024]
         + unhex("01 0000000000000600 00000004")      # COPY base[1536:1540] "tail"
         + unhex("00"))                               # END
MANIFEST = (b'{"anti_rollback_counter":7,"board":"qemu-x86_64","format_version":1,"kind":"uki",'
            b'"uki":{"sha256":"31008538043e78ee05361035dd981d8f4d3920e9e5d7db373532c0c64650892c",'
            b'"size":1031},"version":"1.2.4"}')
# Ed25519(TEST 1 key, b"trusted-phone/uki-manifest/v1\0" + MANIFEST)
SIG = unhex("2f5f764e511ed7ed21c10fcd50a519ace2eb114f8d0412422cb2f06b9a7c7aca"
            "19c1a1f78be0858e0cee41bbc967122516c65d29835cd6f00a6fd07a21507508")
# Ed25519(TEST 1 key, MANIFEST): the bundle's way, without the domain prefix
SIG_NO_DOMAIN = unhex("fccad8257087a691336df18dbeeba7364164c9feb99f3a11be490c925482752a"
                      "6b4ff9831f49a011931c8c23461e8ab5596b4df8a8802b3dbbd2c11b59171e00")
VERIFY = signature.load_public_key(TEST1_PEM)
BOARD = "qemu-x86_64"


def read_base(data):
    return lambda off, n: data[off:off + n]


def package(payload_name, payload, man=MANIFEST, sig=SIG):
    return make_ustar([(U.MANIFEST_NAME, man), (U.SIGNATURE_NAME, sig), (payload_name, payload)])


def test_delta_vector_encodes_and_applies_byte_exact():
    assert compat.sha256(BASE) == BASE_SHA
    assert D.encode_header(len(BASE), BASE_SHA, len(TARGET)) + D.encode_copy(0, 512) \
        + D.encode_data(b"new") + D.encode_copy(512, 512) + D.encode_copy(1536, 4) \
        + D.encode_end() == DELTA
    assert D.check(DELTA) == (1540, BASE_SHA, 1031)
    assert bytes(D.apply(DELTA, read_base(BASE))) == TARGET
    assert [op[:2] for op in D.ops(DELTA)] == [(1, 0), (2, 512), (1, 515), (1, 1027)]


def _delta(*ops, target=len(TARGET)):
    return D.encode_header(len(BASE), BASE_SHA, target) + b"".join(ops)


def test_hostile_deltas_are_refused_naming_the_op():
    cases = [
        (DELTA[:59], "header", "59 bytes, the header has 60"),
        (b"UKIDELTB" + DELTA[8:], "header", "magic"),
        (DELTA[:8] + unhex("00000002") + DELTA[12:], "header", "format 2 is not 1"),
        (D.encode_header(len(BASE), BASE_SHA, D.MAX_SIZE + 1) + D.encode_end(), "header",
         "target size 67108865 outside"),
        (_delta(D.encode_copy(1500, 41), D.encode_end()), "op",
         "COPY of 41 bytes at base offset 1500 runs past the 1540-byte base"),
        (_delta(D.encode_copy(0xFFFFFFFFFFFFFFFF, 2), D.encode_end()), "op",
         "runs past the 1540-byte base"),
        (_delta(D.encode_copy(0, 1032), D.encode_end()), "op",
         "1032 bytes at target offset 0 run past the 1031-byte target"),
        (_delta(D.encode_copy(0, 0)), "op", "COPY of 0 bytes"),
        (_delta(D.encode_data(b""), D.encode_end()), "op", "DATA of 0 bytes"),
        (_delta(bytes([2]) + (100).to_bytes(4, "big") + b"short"), "op",
         "DATA of 100 bytes, the delta ends after 5"),
        (_delta(D.encode_copy(0, 512), D.encode_end()), "op", "END after 512 bytes of the 1031"),
        (_delta(D.encode_copy(0, 512)), "op", "the delta ends after 0"),
        (_delta(b"\x07"), "op", "unknown op 0x07"),
        (DELTA + b"\x00", "trailing", "1 bytes after END"),
    ]
    for delta, what, words in cases:
        e = raises(D.DeltaError, D.check, delta)
        assert e.what == what and words in e.reason, (what, words, e.reason)
        assert raises(D.DeltaError, D.apply, delta, read_base(BASE)).reason == e.reason or \
            what == "header"  # apply checks the base first; the header fails either way


def test_delta_against_another_base_is_refused_before_any_op():
    other = BASE[:-1] + b"X"
    e = raises(D.BaseMismatch, D.apply, DELTA, read_base(other))
    assert "the base UKI is not the delta's" in e.reason and BASE_SHA.hex() in e.reason
    e = raises(D.BaseMismatch, D.apply, DELTA, read_base(BASE[:1000]))
    assert e.reason == "base UKI too short: 1540 bytes at offset 0 wanted, 1000 read"


def test_package_full_and_delta_rebuild_the_signed_uki():
    for name, payload in ((U.FULL_NAME, TARGET), (U.DELTA_NAME, DELTA)):
        pkg = package(name, payload)
        man = U.verify(pkg, VERIFY, BOARD, 7)
        assert (man["version"], man["anti_rollback_counter"], man["uki"]["size"]) == ("1.2.4", 7, 1031)
        assert U.rebuild(pkg, read_base(BASE)) == TARGET


def test_rebuilt_uki_must_be_the_signed_one():
    # a delta that is well formed and applies to the base, but builds other bytes than signed
    wrong = _delta(D.encode_copy(0, 512), D.encode_data(b"old"), D.encode_copy(512, 512),
                   D.encode_copy(1536, 4), D.encode_end())
    e = raises(U.TargetMismatch, U.rebuild, package(U.DELTA_NAME, wrong), read_base(BASE))
    assert e.reason == "rebuilt UKI: sha256 differs from the signed manifest"
    # another size than signed: refused at verify (no base needed) and at rebuild
    short = _delta(D.encode_copy(0, 512), D.encode_end(), target=512)
    e = raises(U.PackageError, U.verify, package(U.DELTA_NAME, short), VERIFY, BOARD, 0)
    assert e.reason == "uki.delta builds 512 bytes, the signed manifest says 1031"
    e = raises(U.TargetMismatch, U.rebuild, package(U.DELTA_NAME, short), read_base(BASE))
    assert e.reason == "rebuilt UKI of 512 bytes, the signed manifest says 1031"
    e = raises(U.PackageError, U.verify, package(U.FULL_NAME, TARGET[:-1] + b"X"), VERIFY, BOARD, 0)
    assert e.reason == "uki.efi: sha256 differs from the signed manifest"
    e = raises(U.TargetMismatch, U.rebuild, package(U.FULL_NAME, TARGET + b"X"), read_base(BASE))
    assert e.reason == "rebuilt UKI of 1032 bytes, the signed manifest says 1031"


def test_signature_board_and_floor_are_checked():
    pkg = package(U.FULL_NAME, TARGET)
    bad = bytearray(SIG)
    bad[5] ^= 1
    cases = [
        (package(U.FULL_NAME, TARGET, sig=bytes(bad)), BOARD, 7,
         "manifest signature does not verify with the vendor key"),
        (pkg, "qemu-aarch64", 7, "UKI package is for board 'qemu-x86_64', this is 'qemu-aarch64'"),
        (pkg, BOARD, 8, "anti-rollback: UKI package counter 7 is below this device's floor 8"),
    ]
    for p, board, floor, reason in cases:
        assert raises(U.PackageError, U.verify, p, VERIFY, board, floor).reason == reason
    assert raises(U.PackageError, U.verify, pkg, None, BOARD, 0).reason == \
        "no vendor public key in this loader: cannot verify the UKI package"
    assert raises(U.PackageError, U.verify, pkg, VERIFY, BOARD, 0, "TPM gone").reason == \
        "anti-rollback floor unreadable: TPM gone"


def test_signatures_do_not_cross_between_bundle_and_uki_package():
    # the UKI manifest signed the bundle's way (no domain prefix): the bare check would pass it...
    assert VERIFY(MANIFEST, SIG_NO_DOMAIN) is True
    # ...the UKI package's check does not
    e = raises(U.PackageError, U.verify, package(U.FULL_NAME, TARGET, sig=SIG_NO_DOMAIN),
               VERIFY, BOARD, 0)
    assert e.reason == "manifest signature does not verify with the vendor key"
    # a vendor-signed bundle manifest and its signature as a UKI package's
    e = raises(U.PackageError, U.verify,
               package(U.FULL_NAME, TARGET, man=BUNDLE_MANIFEST, sig=BUNDLE_SIG), VERIFY, BOARD, 0)
    assert e.reason == "manifest signature does not verify with the vendor key"
    # the UKI manifest and its (domain-separated) signature as a bundle's
    fake_bundle = make_ustar([(stage.MANIFEST_NAME, MANIFEST), (stage.SIGNATURE_NAME, SIG),
                              ("phone-app", TARGET)])
    assert stage.check_bundle(fake_bundle, VERIFY, BOARD, 0) == \
        "manifest signature does not verify with the vendor key"


def test_each_parser_refuses_the_other_format():
    bundle = make_ustar([(stage.MANIFEST_NAME, BUNDLE_MANIFEST), (stage.SIGNATURE_NAME, BUNDLE_SIG),
                         ("phone-app", b"print('phone app')\n")])
    e = raises(U.PackageError, U.verify, bundle, VERIFY, BOARD, 0)
    assert e.reason == "not a UKI package: a firmware bundle (manifest.json)"
    assert raises(U.PackageError, U.rebuild, bundle, read_base(BASE)).reason == e.reason
    assert stage.check_bundle(package(U.FULL_NAME, TARGET), VERIFY, BOARD, 0) == \
        "unsigned bundle: no manifest.json at the start of the archive"


def test_malformed_packages_and_manifests_are_refused():
    for members, words in (
            ([(U.MANIFEST_NAME, MANIFEST), (U.SIGNATURE_NAME, SIG)], "members uki-manifest.json,"),
            ([(U.MANIFEST_NAME, MANIFEST), (U.SIGNATURE_NAME, SIG), ("uki.zip", TARGET)], "uki.zip"),
            ([(U.MANIFEST_NAME, MANIFEST), (U.SIGNATURE_NAME, SIG), (U.FULL_NAME, TARGET),
              (U.DELTA_NAME, DELTA)], "uki.efi,uki.delta"),
            ([(U.SIGNATURE_NAME, SIG), (U.MANIFEST_NAME, MANIFEST), (U.FULL_NAME, TARGET)],
             "members uki-manifest.sig,")):
        e = raises(U.PackageError, U.split, make_ustar(members))
        assert e.reason.startswith("not a UKI package: members") and words in e.reason, e.reason
    e = raises(U.PackageError, U.split, package(U.FULL_NAME, TARGET)[:1600])
    assert e.reason.startswith("UKI package archive malformed")
    for man, field in ((MANIFEST.replace(b'"kind":"uki"', b'"kind":"bundle"'), "kind"),
                       (MANIFEST.replace(b'"size":1031', b'"size":0'), "uki.size"),
                       (MANIFEST.replace(b"31008538", b"3100853X"), "uki.sha256"),
                       (MANIFEST.replace(b"31008538", b"3100853A"), "uki.sha256"),
                       (MANIFEST.replace(b'"version"', b'"extra":1,"version"'), "extra"),
                       (MANIFEST.replace(b",", b", "), "manifest"),
                       (MANIFEST.replace(b'"format_version":1', b'"format_version":2'),
                        "format_version")):
        e = raises(ValueError, U.parse_manifest, man)
        assert e.field == field, (field, e.field, str(e))


class MemSink:
    def __init__(self):
        self.data = bytearray()
        self.writes = 0

    def write(self, off, data):
        self.writes += 1
        if len(self.data) < off + len(data):
            self.data.extend(bytes(off + len(data) - len(self.data)))
        self.data[off:off + len(data)] = data

    def read(self, off, n):
        return bytes(self.data[off:off + n])


def _send(session, image, chunk=300):
    off = 0
    while off < len(image):
        off = session.write(off, image[off:off + chunk])
    return off


def test_upload_session_stores_the_package_then_rebuild_gives_the_uki():
    from firmware.update import upload as up

    pkg = package(U.DELTA_NAME, DELTA)
    sink = MemSink()
    session = U.UkiUpload(sink, len(pkg), compat.sha256(pkg), VERIFY, BOARD, 7, 1 << 20)
    assert _send(session, pkg) == len(pkg) and session.done
    assert bytes(sink.data) == pkg and session.manifest["version"] == "1.2.4"
    assert U.rebuild(bytes(sink.data), read_base(BASE)) == TARGET
    # refused on the signed manifest, before the sink got a byte
    sink = MemSink()
    session = U.UkiUpload(sink, len(pkg), None, VERIFY, BOARD, 8, 1 << 20)
    e = raises(up.UploadRefused, _send, session, pkg)
    assert e.rc == up.IMG_CURRENT_VERSION_IS_NEWER and sink.writes == 0
