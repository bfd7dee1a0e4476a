"""host_tools.image.bootcheck: parsing what /init and the phone console print (no QEMU here;
the boot itself is tests/system/test_image_build.py)."""

from __future__ import annotations

import base64

import pytest

from host_tools.image import bootcheck

CONSOLE = ("noise\r\n" + bootcheck.PCRS_BEGIN + "\r\nsha256 4 " + "AB" * 32 + "\r\nsha1 4 "
           + "00" * 20 + "\r\nsha256 10 " + "cd" * 32 + "\r\n" + bootcheck.PCRS_END + "\r\n"
           + bootcheck.LOG_BEGIN + "\r\n" + base64.b64encode(b"\x01" * 100).decode()[:60]
           + "\r\n" + base64.b64encode(b"\x01" * 100).decode()[60:] + "\r\n"
           + bootcheck.LOG_END + "\r\n")


def test_parse_console() -> None:
    pcrs, log = bootcheck.parse_console(CONSOLE)
    assert pcrs == {4: b"\xab" * 32, 10: b"\xcd" * 32}
    assert log == b"\x01" * 100


def test_parse_console_without_markers() -> None:
    with pytest.raises(ValueError):
        bootcheck.parse_console("kernel panic\n")


def test_parse_console_pcrs_answer() -> None:
    answer = 'pcrs\r\n{"sha256":{"14":"' + "11" * 32 + '"}}\r\n'
    assert bootcheck.parse_console_pcrs(answer) == {14: b"\x11" * 32}
    with pytest.raises(bootcheck.BootError, match="no JSON"):
        bootcheck.parse_console_pcrs("error: unknown command\r\n")


def test_compare_names_each_differing_pcr() -> None:
    ref = {"pcrs": {"sha256": {"4": "ab" * 32, "7": "00" * 32}}}
    measured = {4: b"\xab" * 32, 7: b"\x01" * 32}
    assert bootcheck.compare(ref, measured, [4]) == []
    (line,) = bootcheck.compare(ref, measured, [4, 7])
    assert line.startswith("PCR 7: predicted " + "00" * 32)
    (missing,) = bootcheck.compare(ref, measured, [9])
    assert missing == "PCR 9: predicted None, TPM has None"
