# firmware.eventlog on real firmware logs: captured from OVMF 2022.11 (Debian 2022.11-6+deb12u2) with
# swtpm 0.7.1 under QEMU (tests/data/ovmf*/README.md says how; host_tools/testdata.py regenerates).
# Runs under pytest and micropython.
import json

from firmware import compat
from firmware.eventlog import parse_log, replay
from firmware.eventlog import types as T

# PCR 10 is extended by the kernel's IMA (boot_aggregate), which is not in the firmware log.
NOT_IN_FIRMWARE_LOG = (10,)


# tests/data relative to this file, so the tests do not depend on the working directory
_DATA = __file__.rsplit("/", 3)[0] + "/data/" if "/" in __file__ else "tests/data/"


def _load(name):
    with open(_DATA + name + "/binary_bios_measurements", "rb") as f:
        data = f.read()
    with open(_DATA + name + "/pcrs.json") as f:
        pcrs = json.load(f)
    return data, pcrs


def _check_replay_matches(name, banks):
    data, pcrs = _load(name)
    log = parse_log(data)
    assert log.header.banks == banks
    assert sorted(pcrs) == sorted(banks)
    r = replay(log)
    for bank in banks:
        for i in range(24):
            if i in NOT_IN_FIRMWARE_LOG:
                continue
            assert r[bank][i].hex() == pcrs[bank][str(i)], (name, bank, i)
    return log


def test_ovmf_all_banks_replay_matches_pcrs():
    _check_replay_matches("ovmf", ("sha1", "sha256", "sha384", "sha512"))


def test_ovmf_sha256_replay_matches_pcrs():
    _check_replay_matches("ovmf-sha256", ("sha256",))


def test_ovmf_known_events():
    data, _ = _load("ovmf")
    log = parse_log(data)
    assert len(log.events) == 24  # 25 with the Spec ID header, as tpm2_eventlog counts
    assert log.startup_locality is None
    seps = [(e.number, e.pcr) for e in log.events if e.type == T.EV_SEPARATOR]
    assert seps == [(9, 7), (14, 0), (15, 1), (16, 2), (17, 3), (18, 4), (19, 5), (20, 6)]
    for e in log.events:
        if e.type == T.EV_SEPARATOR:
            assert e.data == b"\x00\x00\x00\x00"
            for bank in ("sha1", "sha256", "sha384", "sha512"):
                assert e.digest(bank) == compat.digest(bank, e.data)
    first = log.events[0]
    assert (first.pcr, first.type, first.data) == (0, T.EV_S_CRTM_VERSION, b"\x00\x00")
    assert first.digest("sha256").hex() == \
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
    assert log.events[3].describe() == \
        "variable 8be4df61-93ca-11d2-aa0d-00e098032b8c SecureBoot (1 bytes)"
    assert log.events[12].type == T.EV_EFI_ACTION
    assert log.events[12].data == b"Calling EFI Application from Boot Option"
    # the Linux EFI stub's tagged events in PCR 9 (load options, then the initrd)
    assert [e.type for e in log.events if e.pcr == 9] == [T.EV_EVENT_TAG, T.EV_EVENT_TAG]
    assert log.events[21].data.endswith(b"Linux initrd\x00")


def test_ovmf_payload_decoders():
    # Values as tpm2_eventlog 5.4 decodes the same events (BlobBase/BlobLength, ImageLocation...).
    from firmware.eventlog.decode import firmware_blob, image_load

    data, _ = _load("ovmf")
    log = parse_log(data)
    assert firmware_blob(log.events[1].data) == (0x820000, 0xE0000)
    assert firmware_blob(log.events[2].data) == (0x900000, 0xC00000)
    assert log.events[1].describe() == "firmware blob at 0x820000, 0xe0000 bytes"
    app = log.events[9]
    assert app.type == T.EV_EFI_BOOT_SERVICES_APPLICATION
    location, length, link, path = image_load(app.data)
    assert (location, length, link, len(path)) == (0x1C8FD018, 14186432, 0, 42)
    assert path.hex() == ("0403140072f728144ab61e44b8c39ebdd7f893c7040412006b00650072006e0065006c"
                          "0000007fff0400")
    assert app.describe() == "image at 0x1c8fd018, 14186432 bytes, device path 42 bytes"
