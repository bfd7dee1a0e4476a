"""host_tools.image.predict: PCR replay and each event family, against independent oracles:
systemd-measure (PCR 11), a real OVMF boot capture (PCR 7, PCR 4/5 event digests), and the
phone's own log writer firmware.eventlog (PCR 14)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from firmware.eventlog import PhoneLog, parse_log, replay as fw_replay
from host_tools.image import predict

DATA = Path(__file__).resolve().parents[2] / "data"
SYSTEMD_MEASURE = "/usr/lib/systemd/systemd-measure"


def test_replay_is_tpm_extend() -> None:
    # TPM 2.0 Part 1 §17.1: PCR_new = H(PCR_old || digest), PCRs 0-15 reset to zeroes
    d = hashlib.sha256(b"x").digest()
    assert predict.replay([]) == b"\0" * 32
    assert predict.replay([d]) == hashlib.sha256(b"\0" * 32 + d).digest()
    assert predict.replay([d, d]) == hashlib.sha256(predict.replay([d]) + d).digest()
    with pytest.raises(ValueError, match="20 bytes extended into a sha256 PCR"):
        predict.replay([b"\0" * 20])


def _uki_sections(tmp: Path) -> dict[str, bytes]:
    return {".osrel": b"ID=trusted-phone\nVERSION_ID=0.1.0\n", ".cmdline": b"console=ttyS0 quiet",
            ".linux": bytes(range(256)) * 40, ".initrd": b"\x1f\x8b" + b"\x05" * 3000}


def test_pcr11_matches_systemd_measure(tmp_path: Path) -> None:
    from host_tools.image import uki
    sections = _uki_sections(tmp_path)
    data = uki.build_uki(uki.DEFAULT_STUB, sections, tmp_path / "u.efi")
    args = []
    for name, content in sections.items():
        (tmp_path / name[1:]).write_bytes(content)
        args.append(f"--{name[1:]}={tmp_path / name[1:]}")
    out = subprocess.run([SYSTEMD_MEASURE, "calculate", *args, "--phase=", "--bank=sha256",
                          "--json=short"], capture_output=True, text=True, check=True).stdout
    oracle = json.loads(out)["sha256"][0]
    assert oracle["pcr"] == 11
    events = predict.pcr11_events(data)
    assert [e.description for e in events[::2]] == [
        "section name .linux", "section name .osrel", "section name .cmdline",
        "section name .initrd"]
    assert predict.pcr_values(events)[11].hex() == oracle["hash"]


def test_pcr11_skips_absent_sections(tmp_path: Path) -> None:
    from host_tools.image import uki
    data = uki.build_uki(uki.DEFAULT_STUB, {".linux": b"k" * 100, ".initrd": b"i"},
                         tmp_path / "u.efi")
    names = [e.description for e in predict.pcr11_events(data)]
    assert names == ["section name .linux", "section .linux", "section name .initrd",
                     "section .initrd"]


def _captured(name: str) -> tuple[list[object], dict[str, str]]:
    log = parse_log((DATA / name / "binary_bios_measurements").read_bytes())
    pcrs = json.loads((DATA / name / "pcrs.json").read_text())["sha256"]
    return log.events, pcrs


def test_pcr7_matches_captured_ovmf_boot() -> None:
    # captured from OVMF 2022.11 (Debian 2022.11-6+deb12u2) + swtpm 0.7.1, fresh OVMF_VARS_4M.fd;
    # see tests/data/ovmf-sha256/README.md
    events, pcrs = _captured("ovmf-sha256")
    real = [e for e in events if e.pcr == 7]  # type: ignore[attr-defined]
    predicted = predict.pcr7_events()
    assert [e.type_name for e in real] == [p.event_type for p in predicted]  # type: ignore[attr-defined]
    for r, p in zip(real, predicted):
        assert r.digest("sha256") == p.digest, p.description  # type: ignore[attr-defined]
    for r, (guid, name, value) in zip(real, predict.OVMF_SECURE_BOOT_DISABLED):
        assert r.data == predict.uefi_variable_data(guid, name, value)  # type: ignore[attr-defined]
    assert predict.pcr_values(predicted)[7].hex() == pcrs["7"]


def test_pcr4_fixed_events_match_captured_ovmf_boot() -> None:
    # The capture is a direct kernel boot (its images differ), so only the action and the
    # separator are comparable here; the system test compares a whole boot of our image.
    events, _ = _captured("ovmf-sha256")
    real = {e.type_name: e for e in events if e.pcr == 4}  # type: ignore[attr-defined]
    action, sep = real["EV_EFI_ACTION"], real["EV_SEPARATOR"]
    assert action.data == predict.CALLING_EFI_APP  # type: ignore[attr-defined]
    assert action.digest("sha256") == predict.sha256(predict.CALLING_EFI_APP)  # type: ignore[attr-defined]
    assert sep.digest("sha256") == predict.sha256(predict.SEPARATOR_DATA)  # type: ignore[attr-defined]


def test_pcr9_load_options_form() -> None:
    # LOADED_IMAGE::LoadOptions as systemd-stub passes them: UTF-16LE with the NUL
    assert predict.load_options_utf16("ab") == b"a\0b\0\0\0"
    ev = predict.pcr9_events("ab", b"initrd")
    assert ev[0].digest == hashlib.sha256(b"a\0b\0\0\0").digest()
    assert ev[1].digest == hashlib.sha256(b"initrd").digest()


def test_pcr14_matches_phone_log_writer() -> None:
    comps = [("phone-app", b"app code"), ("sip-media", b"sip"), ("device-config", b"{}"),
             ("ca-bundle", b"-----BEGIN CERTIFICATE-----")]
    log = PhoneLog(banks=("sha256",))
    for name, data in comps:
        log.add_component(name, "0.1.0", data)
    log.close()
    parsed = parse_log(log.to_bytes())
    replayed = fw_replay(parsed)["sha256"][14]
    predicted = predict.pcr14_events([(n, hashlib.sha256(d).digest()) for n, d in comps])
    assert [e.type_name for e in parsed.events] == [p.event_type for p in predicted]
    assert predict.pcr_values(predicted)[14] == replayed


def test_uefi_gpt_data_bad_input() -> None:
    with pytest.raises(ValueError, match="no GPT header signature at offset 512"):
        predict.uefi_gpt_data(b"\0" * 4096)


def test_bundle_event_matches_firmware_encoder_and_writer() -> None:
    from firmware.eventlog.component import encode_bundle
    data = predict.bundle_event_data("qemu-x86_64", "0.1.0", 1)
    assert data == encode_bundle("qemu-x86_64", "0.1.0", 1)  # type: ignore[no-untyped-call]
    comps = [("phone-app", b"app code"), ("ca-bundle", b"ca")]
    log = PhoneLog(banks=("sha256",))
    log.add_bundle("qemu-x86_64", "0.1.0", 1)
    for name, d in comps:
        log.add_component(name, "0.1.0", d)
    log.close()
    replayed = fw_replay(parse_log(log.to_bytes()))["sha256"][14]
    predicted = predict.pcr14_events([(n, hashlib.sha256(d).digest()) for n, d in comps],
                                     ("qemu-x86_64", "0.1.0", 1))
    assert predicted[0].description == "bundle"
    assert predict.pcr_values(predicted)[14] == replayed
    older = predict.pcr14_events([(n, hashlib.sha256(d).digest()) for n, d in comps],
                                 ("qemu-x86_64", "0.0.9", 0))
    assert predict.pcr_values(older)[14] != replayed  # rollback with identical components
    with pytest.raises(ValueError, match="board must be 1..255"):
        predict.bundle_event_data("", "0.1.0", 1)
    with pytest.raises(ValueError, match="u64"):
        predict.bundle_event_data("b", "0.1.0", 2**64)
