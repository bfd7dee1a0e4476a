"""Boot benchmark (docs/BENCHMARKS.md, section "Boot"), QEMU TCG only. The board is
qemu-x86_64 unless BENCH_BOARD names another (``BENCH_BOARD=qemu-aarch64 python -m bench boot``,
``make bench-boot BOARD=qemu-aarch64``); each board is measured against its own floor.

(1) Seconds from QEMU start to the phone console's first prompt (`phone> `) for the built image
    build/qemu-x86_64/disk.img, against the FLOOR measured in the same run: the same OVMF, the same
    Debian kernel, the same systemd-stub UKI layout, cmdline, GPT layout and swtpm, but an initramfs
    of static busybox whose /init runs `poweroff -f` at once (QEMU start -> QEMU exit). Runs
    alternate floor, phone, floor, phone, ... (RUNS each) so load from other jobs hits both alike;
    medians are compared. Each run uses a fresh throwaway device (fresh swtpm state and OVMF
    variables) under a temp dir: user devices in build/devices are never touched.
(2) Image sizes: disk.img (apparent and on disk), UKI, initrd (compressed and uncompressed), bundle.
(3) Peak memory of the phone stack, read in the guest by the console's `mem` command (VmHWM of
    each user process from /proc/<pid>/status, MemTotal/MemAvailable), at the prompt and SETTLE_S
    seconds later.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from host_tools import board as boards
from host_tools import kernel_fetch, testdata
from host_tools.console import Console
from host_tools.image import build as image_build
from host_tools.image import disk, initramfs, uki, userland
from host_tools.qemu import Device
from host_tools.qemu.device import DeviceConfig

REPO = Path(__file__).resolve().parents[1]
BOARD = os.environ.get("BENCH_BOARD", "qemu-x86_64")
RUNS = 5
TARGET_RATIO = 1.3
SETTLE_S = 3.0
BOOT_TIMEOUT_S = 240.0
# /init of the floor: print the kernel's uptime (to split firmware time from kernel time, as the
# phone's `mem` does), then power off at once (reboot(2) with RB_POWER_OFF).
FLOOR_INIT = ("#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
              "echo \"floor-uptime $(/bin/busybox cat /proc/uptime)\"\n/bin/busybox poweroff -f\n")
UPTIME_RE = re.compile(r"floor-uptime ([0-9.]+) ")


def ensure_image(build_dir: Path) -> None:
    if not (build_dir / image_build.DISK_NAME).is_file():
        print("building %s (missing)" % build_dir, flush=True)
        subprocess.run([sys.executable, "-m", "host_tools.image", "--board", BOARD,
                        "--out", str(build_dir)], cwd=REPO, check=True)


def build_floor(out: Path) -> dict[str, int]:
    """The floor image from the image builder's own pieces: same stub, kernel, cmdline, ESP and
    GPT layout as the phone image; only the initramfs differs (and the .osrel version)."""
    _, desc = image_build.load_board(REPO, BOARD)
    plat = boards.platform(desc)
    cache = REPO / "build" / "cache"
    arch_cache = boards.package_cache(cache, plat)
    foreign = plat.deb_arch if arch_cache != cache else None
    kernel = kernel_fetch.fetch_kernel(arch_cache / "kernel",
                                       str(desc["kernel"]["metapackage"]),  # type: ignore[index]
                                       foreign)
    # the board architecture's Debian busybox-static, as in the phone image
    root = userland.fetch_and_unpack(arch_cache, tuple(
        f"{p}:{foreign}" if foreign else p for p in userland.PACKAGES))
    initrd = testdata.build_initramfs(root / "bin" / "busybox", FLOOR_INIT)  # cpio_newc, gzip
    sections = {".osrel": image_build.osrel(BOARD, "floor"),
                ".cmdline": str(desc["cmdline"]).encode(),
                ".linux": kernel.vmlinuz.read_bytes(), ".initrd": initrd}
    out.mkdir(parents=True, exist_ok=True)
    uki_bytes = uki.build_uki(image_build.efi_stub(plat, arch_cache), sections,
                              out / plat.uki_name, plat.objcopy)
    parts = image_build.partitions(desc["partitions_mib"])  # type: ignore[arg-type]
    esp = out / "esp.img"
    disk.make_esp(esp, parts[0].size_mib, {plat.esp_boot_path: uki_bytes}, BOARD,
                  int(desc["source_date_epoch"]))  # type: ignore[call-overload]
    disk.build_disk(out / image_build.DISK_NAME, BOARD, parts, {"esp": esp})
    esp.unlink()
    return {"uki": len(uki_bytes), "initrd": len(initrd)}


def time_floor(name: str, build_dir: Path, devices: Path) -> tuple[float, float]:
    """(seconds from QEMU start to its exit, guest uptime just before the power-off)."""
    dev = Device(name, DeviceConfig(board=BOARD, build_dir=build_dir, devices_dir=devices))
    with dev.running("tcp") as run:
        try:
            rc = run.proc.wait(timeout=BOOT_TIMEOUT_S)
            elapsed = run.elapsed()
        finally:
            if run.console is not None:
                run.console.close()
    if rc != 0:
        raise SystemExit("floor QEMU exited with status %d: %s" % (rc, run.qemu_output()[-500:]))
    m = UPTIME_RE.search(dev.console_log.read_text(errors="replace"))
    if m is None:
        raise SystemExit("floor: no uptime line in %s" % dev.console_log)
    return elapsed, float(m.group(1))


@contextlib.contextmanager
def booted_phone(name: str, build_dir: Path, devices: Path, secure_boot: bool | None = None
                 ) -> Iterator[tuple[float, Console]]:
    """Boot a fresh device to its prompt: (seconds from QEMU start to the prompt, console);
    powered off cleanly on leaving (bench_secureboot.py boots the same way)."""
    dev = Device(name, DeviceConfig(board=BOARD, build_dir=build_dir, devices_dir=devices,
                                    secure_boot=secure_boot))
    with dev.running("tcp") as run:
        con = run.console
        assert con is not None
        try:
            run.wait_prompt(con, BOOT_TIMEOUT_S)
            yield run.elapsed(), con
        finally:
            run.shutdown(con)


def time_phone(name: str, build_dir: Path, devices: Path) -> tuple[float, dict[str, Any]]:
    with booted_phone(name, build_dir, devices) as (elapsed, con):
        at_prompt = con.json_command("mem")
        status = con.status()
        time.sleep(SETTLE_S)
        settled = con.json_command("mem")
    return elapsed, {"at_prompt": at_prompt, "settled": settled, "state": status.get("state"),
                     "unsealed": status.get("unsealed"),
                     "timings": {k: v for k, v in status.items()
                                 if k.endswith("_ms") or k.endswith("_s")}}


def on_disk(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def image_sizes(build_dir: Path) -> dict[str, int]:
    initrd = (build_dir / "initrd.img").read_bytes()
    disk_img = build_dir / image_build.DISK_NAME
    return {"disk_apparent": disk_img.stat().st_size, "disk_on_disk": on_disk(disk_img),
            "uki": (build_dir / image_build.uki_paths(REPO, BOARD)[0]).stat().st_size,
            "initrd_compressed": len(initrd),
            "initrd_uncompressed": len(initramfs.decompress(initrd)),
            "bundle": (build_dir / "bundle.tar").stat().st_size}


def mib(n: int) -> str:
    return "%.1f MiB" % (n / 1048576)


def main() -> dict[str, Any]:
    build_dir = REPO / "build" / BOARD
    print("board %s" % BOARD, flush=True)
    ensure_image(build_dir)
    floors: list[float] = []
    floor_uptimes: list[float] = []
    phones: list[float] = []
    mems: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        floor_dir = Path(tmp) / "floor"
        floor_sizes = build_floor(floor_dir)
        devices = Path(tmp) / "devices"
        for i in range(RUNS):
            t, up = time_floor("floor%d" % i, floor_dir, devices)
            floors.append(t)
            floor_uptimes.append(up)
            print("floor %d: %.2f s (guest uptime at power-off %.2f s: %.2f s before the kernel)"
                  % (i + 1, t, up, t - up), flush=True)
            t, m = time_phone("phone%d" % i, build_dir, devices)
            phones.append(t)
            mems.append(m)
            up = m["at_prompt"]["uptime_s"]
            print("phone %d: %.2f s (guest uptime at prompt %.2f s: %.2f s before the kernel; "
                  "state %s, unsealed %s; %s)" % (i + 1, t, up, t - up, m["state"],
                                                  m["unsealed"], m["timings"]), flush=True)
    floor_med = statistics.median(floors)
    phone_med = statistics.median(phones)
    ratio = phone_med / floor_med
    print("median floor %.2f s, phone %.2f s, ratio %.2fx (target <= %.1fx: %s)"
          % (floor_med, phone_med, ratio, TARGET_RATIO, "met" if ratio <= TARGET_RATIO
             else "NOT met"), flush=True)
    sizes = image_sizes(build_dir)
    print("sizes: disk.img %s apparent / %s on disk; UKI %s; initrd %s compressed (gzip head + zstd) / %s uncompressed; "
          "bundle %s; floor UKI %s, floor initrd %s" % (
              mib(sizes["disk_apparent"]), mib(sizes["disk_on_disk"]), mib(sizes["uki"]),
              mib(sizes["initrd_compressed"]), mib(sizes["initrd_uncompressed"]), mib(sizes["bundle"]),
              mib(floor_sizes["uki"]), mib(floor_sizes["initrd"])), flush=True)
    for i, m in enumerate(mems):
        for when in ("at_prompt", "settled"):
            snap = m[when]
            procs = ", ".join("%s %s %d kB" % (pid, p["name"], p["vm_hwm_kb"])
                              for pid, p in sorted(snap["processes"].items(),
                                                   key=lambda kv: int(kv[0])))
            print("mem run %d %s: VmHWM total %d kB [%s]; MemTotal %d kB, MemAvailable %d kB"
                  % (i + 1, when, snap["total_hwm_kb"], procs, snap["mem_total_kb"],
                     snap["mem_available_kb"]), flush=True)
    print("median guest uptime: floor at power-off %.2f s, phone at prompt %.2f s"
          % (statistics.median(floor_uptimes),
             statistics.median(m["at_prompt"]["uptime_s"] for m in mems)), flush=True)
    result = {"floor_s": floors, "floor_uptime_s": floor_uptimes, "phone_s": phones, "floor_median_s": floor_med,
              "phone_median_s": phone_med, "ratio": ratio, "sizes": sizes,
              "floor_sizes": floor_sizes, "mem": mems}
    print(json.dumps(result, sort_keys=True))
    return result
