# `mem` console command: peak and current memory of the guest's user processes (the phone stack:
# the stage loader as PID 1 and the console/phone it started) plus the kernel's memory totals,
# read from /proc. Read-only; answers one JSON object on one line, like `status`.
#
# Fields come from proc(5): /proc/<pid>/status "VmHWM" (peak resident set size) and "VmRSS";
# /proc/meminfo "MemTotal" and "MemAvailable"; /proc/uptime (when the snapshot was taken, so a host
# can tell how much of a boot came before the kernel). Kernel threads have no Vm* lines and are left out.

import json
import os


def parse_kv_kb(text, wanted):
    """{key: int kB} for the `Key:   123 kB` lines of a /proc status or meminfo text whose key is
    in `wanted`; ValueError names the line when a wanted value is not a number of kB."""
    out = {}
    for line in text.split("\n"):
        key, sep, rest = line.partition(":")
        if not sep or key not in wanted:
            continue
        fields = rest.split()
        if len(fields) != 2 or fields[1] != "kB" or not fields[0].isdigit():
            raise ValueError("%s: expected '<number> kB', got %r" % (key, rest.strip()[:40]))
        out[key] = int(fields[0])
    return out


def parse_name(text):
    for line in text.split("\n"):
        if line.startswith("Name:"):
            return line[5:].strip()
    return "?"


def parse_uptime(text):
    """Seconds since the kernel started, the first field of /proc/uptime ("123.45 67.89")."""
    fields = text.split()
    try:
        return float(fields[0])
    except (IndexError, ValueError):
        raise ValueError("uptime: expected '<seconds> <idle seconds>', got %r" % text[:40])


def _read(path):
    with open(path) as f:
        return f.read()


def snapshot(proc="/proc"):
    """{"processes": {pid: {"name", "vm_hwm_kb", "vm_rss_kb"}}, "total_hwm_kb",
    "mem_total_kb", "mem_available_kb", "uptime_s"}; a process that exits while being read is skipped."""
    procs = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            text = _read("%s/%s/status" % (proc, entry))
        except OSError:
            continue
        kb = parse_kv_kb(text, ("VmHWM", "VmRSS"))
        if "VmHWM" not in kb:
            continue  # kernel thread
        procs[entry] = {"name": parse_name(text), "vm_hwm_kb": kb["VmHWM"],
                        "vm_rss_kb": kb.get("VmRSS", 0)}
    info = parse_kv_kb(_read(proc + "/meminfo"), ("MemTotal", "MemAvailable"))
    total = 0
    for p in procs.values():
        total += p["vm_hwm_kb"]
    return {"processes": procs, "total_hwm_kb": total,
            "mem_total_kb": info.get("MemTotal"), "mem_available_kb": info.get("MemAvailable"),
            "uptime_s": parse_uptime(_read(proc + "/uptime"))}


def answer():
    """The console's answer to `mem`: the snapshot as one JSON line."""
    return json.dumps(snapshot(), separators=(",", ":")) + "\n"
