"""The image build end to end: reproducibility, the bundle on the disk, the reference the
verifier reads, predictions cross-checked with independent tools, and (slow) one real boot
under QEMU + OVMF + swtpm comparing predicted with measured PCRs."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from firmware.eventlog import parse_log, replay as fw_replay
from host_tools.image import bundle, disk, pe, predict
from host_tools.image.build import BuildResult
from host_tools.verify import load_reference
from tests.system.conftest import SnapshotBuild, build_snapshot

REPO = Path(__file__).resolve().parents[2]
BOARD = "qemu-x86_64"


@pytest.fixture(scope="module")
def inputs(snapshot_build: SnapshotBuild) -> tuple[Path, Path]:
    """The frozen copy of the build inputs and the keys of the session's snapshot build
    (tests/system/conftest.py; test_tamper_matrix boots the same image)."""
    return snapshot_build.repo, snapshot_build.keys


def _build(inputs: tuple[Path, Path], out: Path, **kw: object) -> BuildResult:
    repo, keys = inputs
    return build_snapshot(repo, keys, out, **kw)


@pytest.fixture(scope="module")
def first(snapshot_build: SnapshotBuild) -> BuildResult:
    return snapshot_build.result


def _keys(obj: object) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


OUTPUTS = ("disk.img", "reference.json", "BOOTX64.EFI", "initrd.img", "bundle.tar",
           "vendor-pubkey.pem", "OVMF_VARS.secboot.fd", "references.json", "references.sig",
           "uki.tar")


def test_two_builds_are_byte_identical(first: BuildResult, inputs: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    second = _build(inputs, tmp_path / "b")
    for name in OUTPUTS:
        assert _sha(first.out / name) == _sha(second.out / name), name


def test_signing_key_is_bound_into_the_measured_initramfs(first: BuildResult,
                                                         inputs: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    key = tmp_path / "prod.pem"
    bundle.load_or_create_key(key, create=True)
    other = _build(inputs, tmp_path / "c", signing_key=key)
    a = json.loads((first.out / "reference.json").read_text())["pcrs"]["sha256"]
    b = json.loads((other.out / "reference.json").read_text())["pcrs"]["sha256"]
    # same components, so the same PCR 14; the stage loader's vendor key lives in the initramfs,
    # so another key is another initramfs: PCR 4 (UKI), 9 (initrd) and 11 (.initrd) move
    assert a["14"] == b["14"] and a["7"] == b["7"] and a["5"] == b["5"]
    assert all(a[p] != b[p] for p in ("4", "9", "11"))
    assert (first.out / "bundle/manifest.json").read_bytes() == \
        (other.out / "bundle/manifest.json").read_bytes()
    assert (first.out / "bundle/manifest.sig").read_bytes() != \
        (other.out / "bundle/manifest.sig").read_bytes()
    assert (other.out / "vendor-pubkey.pem").read_bytes() == bundle.public_pem(
        bundle.load_or_create_key(key, create=False))


def test_disk_holds_uki_and_signed_bundle(first: BuildResult) -> None:
    data = first.disk.read_bytes()
    sizes = json.loads((REPO / "board" / BOARD / "board.json").read_text())["partitions_mib"]
    fw_off = disk.MIB + sizes["esp"] * disk.MIB
    raw = data[fw_off:fw_off + sizes["phone-fw"] * disk.MIB]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
        manifest = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
        sig = tar.extractfile("manifest.sig").read()  # type: ignore[union-attr]
        comps = {n: tar.extractfile(n).read() for n in names[2:]}  # type: ignore[union-attr]
    pub = load_pem_public_key((first.out / "vendor-pubkey.pem").read_bytes())
    assert isinstance(pub, Ed25519PublicKey)
    bundle.verify(pub, manifest, sig)
    m = json.loads(manifest)
    assert [c["name"] for c in m["components"]] == names[2:] == [
        "phone-app", "sip-media", "device-config", "ca-bundle"]
    for c in m["components"]:
        assert hashlib.sha256(comps[c["name"]]).hexdigest() == c["sha256"]
        assert len(comps[c["name"]]) == c["size"] and c["pcr"] == 14
    assert b"BEGIN CERTIFICATE" in comps["ca-bundle"]
    config = json.loads(comps["device-config"])
    assert config["sip"]["registrar"] and config["account"]
    assert not _keys(config) & {"password", "secret", "pin", "private_key", "ha1"}
    # the ESP holds the UKI as the removable-media boot path
    esp = first.out / "esp-check.img"
    esp.write_bytes(data[disk.MIB:disk.MIB + sizes["esp"] * disk.MIB])
    got = subprocess.run(["mtype", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI"],
                         env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
                         capture_output=True, check=True).stdout
    esp.unlink()
    assert got == (first.out / "BOOTX64.EFI").read_bytes()


def test_reference_loads_in_verifier_and_matches_bundle(first: BuildResult) -> None:
    ref = load_reference(first.out / "reference.json")
    assert ref.board == BOARD
    assert set(ref.pcrs["sha256"]) >= {4, 7, 9, 11, 14}
    m = json.loads((first.out / "bundle/manifest.json").read_bytes())
    # the verifier reads reference.json's "bundle" object as a first component named "bundle"
    bundle_ev = predict.bundle_event_data(m["board"], m["bundle_version"],
                                          m["anti_rollback_counter"])
    assert (ref.components[0].name, ref.components[0].sha256) == (
        "bundle", hashlib.sha256(bundle_ev).digest())
    assert [(c.name, c.sha256.hex(), c.pcr) for c in ref.components[1:]] == [
        (c["name"], c["sha256"], c["pcr"]) for c in m["components"]]


def test_code_components_ship_unchecked_hash_pyc(first: BuildResult) -> None:
    # PEP 552: flags 0b01 = hash-based, check_source clear; one .pyc beside every source, so the
    # device never compiles the bundle's code
    import importlib.util
    for name in ("phone-app", "sip-media"):
        with tarfile.open(first.out / "bundle" / "components" / name) as tar:
            names = tar.getnames()
            sources = [n for n in names if n.endswith(".py")]
            assert sources
            for src in sources:
                d, _, base = src.rpartition("/")
                pyc = tar.extractfile(f"{d}/__pycache__/{base[:-3]}.cpython-311.pyc")
                assert pyc is not None
                head = pyc.read(16)
                assert head[:4] == importlib.util.MAGIC_NUMBER
                assert int.from_bytes(head[4:8], "little") == 0b01, src


def test_initramfs_names_its_board(first: BuildResult) -> None:
    from host_tools.image import initramfs
    import re
    raw = initramfs.decompress((first.out / "initrd.img").read_bytes())
    # newc: 110-byte ASCII header, name, NUL, padding to 4 bytes, then the file data
    found = re.search(re.escape(initramfs.BOARD_PATH.encode()) + b"\\x00+("
                      + re.escape(BOARD.encode()) + b")\\n", raw)
    assert found is not None


def systemd_measure_pcr11(uki: bytes, tmp_path: Path) -> str:
    """PCR 11 (sha256 hex) as systemd-measure computes it from the UKI's sections (the oracle)."""
    img = pe.parse(uki)
    args = []
    for name in (".linux", ".osrel", ".cmdline", ".initrd"):
        (tmp_path / name[1:]).write_bytes(img.section_data(name))
        args.append(f"--{name[1:]}={tmp_path / name[1:]}")
    out = subprocess.run(["/usr/lib/systemd/systemd-measure", "calculate", *args, "--phase=",
                          "--bank=sha256", "--json=short"], capture_output=True, text=True,
                         check=True).stdout
    return str(json.loads(out)["sha256"][0]["hash"])


def test_pcr11_matches_systemd_measure_on_built_uki(first: BuildResult, tmp_path: Path) -> None:
    ref = json.loads((first.out / "reference.json").read_text())
    assert systemd_measure_pcr11((first.out / "BOOTX64.EFI").read_bytes(), tmp_path) \
        == ref["pcrs"]["sha256"]["11"]


def verify_signed_uki(uki: Path, keys: Path) -> tuple[str, re.Match[str]]:
    """sbverify and osslsigncode (independent Authenticode implementations) accept *uki* with the
    db certificate; -> (osslsigncode's output, the match whose group 1 is its digest)."""
    sb = subprocess.run(["sbverify", "--cert", str(keys / "secureboot-db.pem"), str(uki)],
                        capture_output=True, text=True, check=False)
    assert sb.returncode == 0 and "Signature verification OK" in sb.stdout + sb.stderr, sb
    out = subprocess.run(["osslsigncode", "verify", "-CAfile", str(keys / "secureboot-db.pem"),
                          "-in", str(uki)], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Calculated message digest\s*:\s*([0-9A-Fa-f]{64})", out)
    assert m and re.search(r"Current message digest\s*:\s*" + m.group(1), out), out
    return out, m


def test_uki_is_signed_by_the_db_key_and_its_authenticode_digest_matches(
        first: BuildResult, inputs: tuple[Path, Path]) -> None:
    # the build signs the UKI (Secure Boot, host_tools/image/secureboot.py): sbverify and
    # osslsigncode (independent Authenticode implementations) accept it with the db certificate,
    # and osslsigncode's digest of the signed file is the PCR 4 prediction
    _repo, keys = inputs
    uki = first.out / "BOOTX64.EFI"
    out, m = verify_signed_uki(uki, keys)
    assert "Signing time: Jan  1 00:00:00 2026 GMT" in out  # SOURCE_DATE_EPOCH, not the clock
    data = uki.read_bytes()
    ref = json.loads((first.out / "reference.json").read_text())
    assert ref["boot"]["uki_authenticode_sha256"] == pe.authenticode_digest(data).hex() \
        == m.group(1).lower()
    assert [e["digest"] for e in ref["events"] if e["type"] == "EV_EFI_BOOT_SERVICES_APPLICATION"] \
        == [m.group(1).lower()]  # Secure Boot on: systemd-stub starts the kernel without LoadImage
    # a different db certificate does not verify it
    other = subprocess.run(["sbverify", "--cert", str(keys / "secureboot-kek.pem"), str(uki)],
                           capture_output=True, text=True, check=False)
    assert other.returncode != 0


def _tpm2_eventlog_pcr7(text: str) -> list[tuple[str, str]]:
    """(EventType, sha256 digest) of PCR 7's events in tpm2_eventlog's YAML-ish output."""
    out = []
    for block in text.split("- EventNum:")[1:]:
        if not re.search(r"^\s*PCRIndex: 7$", block, re.M):
            continue
        etype = re.search(r"EventType: (\w+)", block)
        dig = re.search(r"AlgorithmId: sha256\s+Digest: \"([0-9a-f]{64})\"", block)
        assert etype and dig, block
        out.append((etype.group(1), dig.group(1)))
    return out


@pytest.mark.slow
def test_boot_measures_what_was_predicted(first: BuildResult, inputs: tuple[Path, Path]) -> None:
    from host_tools.image.bootcheck import boot_and_dump, compare
    ref = json.loads((first.out / "reference.json").read_text())
    dump = boot_and_dump(first.disk)
    assert compare(ref, dump.pcrs, [4, 5, 7, 9, 11, 12]) == []
    # nothing overrides the command line: systemd-stub extends nothing into PCR 12 (issue 9)
    assert dump.pcrs[12] == b"\0" * 32 and ref["pcrs"]["sha256"]["12"] == "00" * 32
    # the firmware log replays to the TPM's PCRs, and its events are the predicted ones
    log = parse_log(dump.eventlog)
    replayed = fw_replay(log, banks=("sha256",))["sha256"]
    assert [e for e in log.events if e.pcr == 12] == []
    # PCR 7 with the vendor's keys (TCG PC Client PFP §3.3.4.8): SecureBoot, PK, KEK, db, dbx,
    # separator, the db certificate that verified the UKI; tpm2_eventlog (an independent parser)
    # reads the same event types and digests from the real OVMF log
    assert [e["type"] for e in ref["events"] if e["pcr"] == 7] == (
        ["EV_EFI_VARIABLE_DRIVER_CONFIG"] * 5 + ["EV_SEPARATOR", "EV_EFI_VARIABLE_AUTHORITY"])
    log_file = first.out / "boot-eventlog.bin"
    log_file.write_bytes(dump.eventlog)
    yaml_ish = subprocess.run(["tpm2_eventlog", str(log_file)], capture_output=True, text=True,
                              check=True).stdout
    log_file.unlink()
    pcr7 = _tpm2_eventlog_pcr7(yaml_ish)
    assert pcr7 == [(e["type"], e["digest"]) for e in ref["events"] if e["pcr"] == 7], pcr7
    for pcr in (4, 5, 7, 9, 11):
        assert replayed[pcr] == dump.pcrs[pcr], pcr
        real = [(e.type_name, e.digest("sha256").hex()) for e in log.events if e.pcr == pcr]
        want = [(e["type"], e["digest"]) for e in ref["events"] if e["pcr"] == pcr]
        assert real == want, pcr
    assert dump.pcrs[14] == b"\0" * 32  # read by /init: before the stage loader
    assert "init: firmware partition /dev/vda2, data partition /dev/vda3" in dump.console
    repo, _keys = inputs
    if (repo / "firmware" / "boot" / "__main__.py").exists():
        # the stage loader verified the bundle, closed PCR 14 and started the phone console
        assert dump.pcrs_after_stage is not None, dump.console[-3000:]
        assert compare(ref, dump.pcrs_after_stage, [4, 5, 7, 9, 11, 14]) == []
