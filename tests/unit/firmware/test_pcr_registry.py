# firmware.pcr_registry: the board's component register (board.json component_pcr) must be a PCR
# no other party of this board's boot chain measures into (UAPI Linux TPM PCR Registry, PFP §3.3.4)
# and not a resettable or DRTM register (PC Client PTP §4.6); a refusal names the PCR and its owner.
# The stage loader reads the setting from its initramfs (firmware.boot.partitions.component_pcr)
# and measures the bundle into that register (firmware.boot.stage).
from firmware import compat
from firmware.eventlog import parse_log, replay
from firmware.pcr_registry import (DEFAULT_COMPONENT_PCR, OWNERS, PcrCollisionError,
                                   check_component_pcr, owner, parse_component_pcr)
from tests.unit.firmware.check import raises, skip
from tests.unit.firmware.check import unhex
from tests.unit.firmware.test_boot_stage import COMPONENTS, MANIFEST, SIG_VENDOR, bundle, run

MANIFEST_PCR13 = MANIFEST.replace(b'"pcr":14', b'"pcr":13')
SIG_PCR13 = unhex("082a011b252ed5f83ecf538f230a803b51d34d07970aed74d13e7e83fa91428e"
                  "6bbfac19c59e46831c4e171cd8faac51a49a1441e8f4c78368c761dc513b5f06")


def test_every_boot_chain_register_is_refused_naming_its_owner():
    for pcr in list(range(0, 13)) + list(range(16, 24)):
        e = raises(PcrCollisionError, check_component_pcr, pcr)
        assert e.pcr == pcr and e.owner == owner(pcr) == OWNERS[pcr]
        assert ("PCR %d collides" % pcr) in str(e) and e.owner in str(e), str(e)
    assert "OVMF" in owner(4) and "Authenticode" in owner(4)
    assert "OVMF" in owner(7) and "Secure Boot" in owner(7)
    assert "systemd-stub" in owner(11) and "systemd-stub" in owner(12)
    assert "Linux EFI stub" in owner(9)
    assert "resettable" in owner(16) and "resettable" in owner(23)


def test_free_registers_are_accepted():
    for pcr in (13, 14, 15):
        assert owner(pcr) is None
        assert check_component_pcr(pcr) == pcr
    assert DEFAULT_COMPONENT_PCR == 14


def test_not_a_pcr_index_is_refused():
    for bad in (-1, 24, 255, True, None, "14", 14.0):
        e = raises(PcrCollisionError, check_component_pcr, bad)
        assert "not a PCR index 0..23" in str(e), str(e)


def test_setting_file_parses_strictly():
    assert parse_component_pcr("13\n") == 13
    assert parse_component_pcr("15") == 15
    for bad in ("", "\n", "x", "014", "-1", "1 4", "0x0e"):
        e = raises(PcrCollisionError, parse_component_pcr, bad)
        assert "not a PCR index" in str(e), (bad, str(e))
    e = raises(PcrCollisionError, parse_component_pcr, "11\n")
    assert "PCR 11" in str(e) and "systemd-stub" in str(e)


def test_loader_measures_into_the_boards_register():
    # the vendor's bundle for a board whose register is 13: same components, the signed manifest
    # says "pcr":13 (signed with the RFC 8032 TEST 1 key like MANIFEST)
    out, extends = run(bundle(manifest=MANIFEST_PCR13, sig=SIG_PCR13), pcr=13)
    assert out.state == "verified", out.reason
    assert [p for p, _ in extends] == [13] * (len(COMPONENTS) + 2)
    log = parse_log(out.log.to_bytes())
    assert [e.pcr for e in log.events] == [13] * (len(COMPONENTS) + 2)
    values = replay(log, banks=("sha256",))["sha256"]
    assert values[14] == b"\x00" * 32 and values[13] != b"\x00" * 32
    pcr13 = b"\x00" * 32
    for _, digests in extends:
        pcr13 = compat.sha256(pcr13 + digests["sha256"])
    assert values[13] == pcr13
    assert out.to_json()["component_pcr"] == 13


def test_manifest_for_another_register_is_refused():
    # a bundle signed for the PCR 14 board, on a board whose register is 13: measured into 13,
    # then refused naming both registers
    out, extends = run(bundle(), pcr=13)
    assert out.state == "refused"
    assert out.reason == ("component 'phone-app': manifest asks for PCR 14, this board measures "
                          "into PCR 13"), out.reason
    assert {p for p, _ in extends} == {13}


def test_bundle_for_register_13_on_a_register_14_loader_is_refused():
    out, extends = run(bundle(manifest=MANIFEST_PCR13, sig=SIG_PCR13))
    assert out.state == "refused" and {p for p, _ in extends} == {14}
    assert out.reason == ("component 'phone-app': manifest asks for PCR 13, this board measures "
                          "into PCR 14"), out.reason


def test_unusable_setting_refuses_every_bundle():
    out, extends = run(bundle(), pcr=14, pcr_error="component register PCR 11 collides")
    assert out.state == "refused" and out.reason.startswith("board setting unusable: ")
    assert "PCR 11" in out.reason
    assert len(extends) == len(COMPONENTS) + 2  # measured first all the same
    assert SIG_VENDOR  # the genuine, signed bundle: only the setting refuses it


def _partitions():
    try:
        import subprocess  # noqa: F401
        import tempfile  # noqa: F401
    except ImportError:
        skip("firmware.boot.partitions needs subprocess (CPython only)")
    from firmware.boot import partitions
    return partitions


def test_loader_reads_the_setting_from_its_initramfs():
    partitions = _partitions()
    import os
    import tempfile
    saved = partitions.COMPONENT_PCR_PATH
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "component-pcr")
        partitions.COMPONENT_PCR_PATH = path
        try:
            # no file: an image built before the setting existed measured into PCR 14
            assert partitions.component_pcr() == (14, None)
            for text, want in (("15\n", 15), ("13\n", 13), ("14\n", 14)):
                with open(path, "w") as f:
                    f.write(text)
                assert partitions.component_pcr() == (want, None)
            with open(path, "w") as f:
                f.write("9\n")
            pcr, err = partitions.component_pcr()
            assert pcr == 14 and path in err and "PCR 9" in err and "Linux EFI stub" in err, err
            with open(path, "wb") as f:
                f.write(b"\xff\n")
            pcr, err = partitions.component_pcr()
            assert pcr == 14 and err is not None and "not a PCR index" in err, err
        finally:
            partitions.COMPONENT_PCR_PATH = saved
