# The console's `mem` command (firmware/console/mem.py): parsing of proc(5) status/meminfo text and
# a snapshot of this machine's real /proc (the tests run on Linux under pytest and MicroPython).

import json

from firmware.console import mem
from firmware.console.core import ACTION_NONE, Console
from tests.unit.firmware.check import raises

# Shape of /proc/<pid>/status and /proc/meminfo as Linux 6.1 prints them (proc(5)).
STATUS = ("Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t1\n"
          "VmPeak:\t   30000 kB\nVmHWM:\t   21344 kB\nVmRSS:\t   20120 kB\nThreads:\t1\n")
MEMINFO = "MemTotal:         496112 kB\nMemFree:          300000 kB\nMemAvailable:     410220 kB\n"


def test_parse_status_fields():
    assert mem.parse_kv_kb(STATUS, ("VmHWM", "VmRSS")) == {"VmHWM": 21344, "VmRSS": 20120}
    assert mem.parse_name(STATUS) == "python3"


def test_parse_meminfo_fields():
    kb = mem.parse_kv_kb(MEMINFO, ("MemTotal", "MemAvailable"))
    assert kb == {"MemTotal": 496112, "MemAvailable": 410220}


def test_kernel_thread_has_no_vm_lines():
    assert mem.parse_kv_kb("Name:\tkthreadd\nState:\tS (sleeping)\n", ("VmHWM",)) == {}


def test_bad_value_names_the_field():
    e = raises(ValueError, mem.parse_kv_kb, "VmHWM:\t  12x kB\n", ("VmHWM",))
    assert "VmHWM" in str(e) and "12x kB" in str(e)
    e = raises(ValueError, mem.parse_kv_kb, "MemTotal:  496112 MB\n", ("MemTotal",))
    assert "MemTotal" in str(e)


def test_parse_uptime():
    assert mem.parse_uptime("12.34 20.01\n") == 12.34
    assert "uptime" in str(raises(ValueError, mem.parse_uptime, ""))
    assert "uptime" in str(raises(ValueError, mem.parse_uptime, "soon 1.0\n"))


def test_snapshot_of_this_machine():
    snap = mem.snapshot()
    assert snap["mem_total_kb"] > 0 and 0 <= snap["mem_available_kb"] <= snap["mem_total_kb"]
    assert len(snap["processes"]) >= 1   # at least this test's own interpreter
    total = 0
    for pid, p in snap["processes"].items():
        assert pid.isdigit() and p["vm_hwm_kb"] > 0 and p["name"]
        total += p["vm_hwm_kb"]
    assert snap["total_hwm_kb"] == total
    assert snap["uptime_s"] > 0


def test_console_mem_command_answers_one_json_line():
    text, action = Console(None).handle(b"mem\n")
    assert action == ACTION_NONE and text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text)["mem_total_kb"] > 0
    text, action = Console(None).handle(b"mem now\n")
    assert text == "error: mem takes no arguments\n"


def test_help_lists_mem():
    text, _ = Console(None).handle(b"help\n")
    assert "  mem " in text
