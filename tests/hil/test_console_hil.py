"""The phone's serial console protocol, as a tool or a person on the UART sees it. Runs against
a board with ``--target`` and against a QEMU device otherwise (see conftest.py)."""

from __future__ import annotations

import re
from typing import Any, Callable, cast

import pytest

from firmware.eventlog import parser, replayer
from host_tools.console import Console

replay = cast(Callable[..., dict[str, dict[int, bytes]]], replayer.replay)
parse_log = cast(Callable[[bytes], Any], parser.parse_log)

pytestmark = pytest.mark.slow
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_help(hil_console: Console) -> None:
    text = hil_console.command("help")
    assert [w for w in ("help", "status", "pcrs", "log", "poweroff") if f"  {w}" not in text] == []


def test_status_fields(hil_console: Console) -> None:
    st = hil_console.status()
    assert st["state"] in ("running", "refused")
    for key in ("image_version", "components", "pcr14", "unsealed", "registered"):
        assert key in st, key
    assert HEX64.match(st["pcr14"])
    assert isinstance(st["unsealed"], bool) and isinstance(st["registered"], bool)
    for c in st["components"]:
        assert c["name"] and HEX64.match(c["sha256"])


def test_pcrs_and_logs_agree(hil_console: Console) -> None:
    pcrs = hil_console.pcrs()["sha256"]
    assert sorted(int(k) for k in pcrs) == list(range(24))
    assert all(HEX64.match(v) for v in pcrs.values())
    logs = hil_console.logs()
    phone = replay(parse_log(logs["phone"]), banks=("sha256",))["sha256"]
    assert phone[14].hex() == pcrs["14"] == hil_console.status()["pcr14"]
    firmware = replay(parse_log(logs["firmware"]), banks=("sha256",))["sha256"]
    for p in (0, 1, 2, 3, 4, 5, 6, 7):
        assert firmware[p].hex() == pcrs[str(p)], p


@pytest.mark.parametrize("line,answer", [
    ("frobnicate", "error: unknown command 'frobnicate' (type help)"),
    ("help me", "error: help takes no arguments"),
    ("status -v", "error: status takes no arguments"),
    ("pcrs sha256 sha1", "error: pcrs takes at most 1 argument"),
    ("pcrs sha3", "error: unknown bank 'sha3' (one of sha1, sha256, sha384, sha512)"),
    ("log dmesg", "error: unknown log 'dmesg' (firmware, phone or all)"),
    ("poweroff now", "error: poweroff takes no arguments"),
    ("z" * 257, "error: line too long (257 characters, at most 256)"),
])
def test_bad_input_one_line_each(hil_console: Console, line: str, answer: str) -> None:
    assert hil_console.command(line) == answer + "\n"


def test_non_utf8_and_control_bytes(hil_console: Console) -> None:
    spawn = hil_console.spawn
    spawn.send(b"\xff\xfe\n")
    spawn.expect_exact("error: input is not UTF-8 text")
    spawn.expect_exact("phone> ")
    # the tty echoes ESC as ^[ (ECHOCTL); the answer is the last line
    answer = hil_console.command("\x1bstatus")
    assert answer.endswith("error: control character 0x1b in input\n")


def test_console_keeps_running(hil_console: Console) -> None:
    assert hil_console.command("") == ""
    assert hil_console.status()["pcr14"]


def test_poweroff_last(hil_console: Console) -> None:
    assert "powering off" in hil_console.poweroff(timeout=60)
