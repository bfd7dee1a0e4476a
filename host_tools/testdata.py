"""Capture real measured-boot test vectors from OVMF + swtpm under QEMU (TCG).

    python3 -m host_tools.testdata --out tests/data/ovmf

boots the Debian cloud kernel (extracted, never installed) with a tiny busybox
initramfs by direct kernel boot under OVMF with a fresh swtpm, and writes:

* ``<out>/``        empty swtpm state: all four PCR banks (sha1/256/384/512);
* ``<out>-sha256/`` swtpm_setup state with only the sha256 bank active and
  EK + platform certificates from a throw-away local CA (a provisioned device);

each holding ``binary_bios_measurements`` (the raw firmware event log read from
securityfs in the guest), ``pcrs.json`` (PCRs 0-23 of every bank the kernel
exposes, read in the same boot) and ``README.md`` (how it was captured).
Before writing, the log is replayed with ``tpm2_eventlog`` and the result must
equal the captured PCRs for every PCR the log touches, in every bank.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import hashlib
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from host_tools.cpio_newc import CpioArchive
from host_tools.kernel_fetch import Kernel, fetch_kernel
from host_tools.swtpm_proc import Swtpm, stop_process, swtpm_setup, swtpm_version

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BUSYBOX = Path("/bin/busybox")
QEMU = "qemu-system-x86_64"
DEFAULT_OUT = Path("tests/data/ovmf")
DEFAULT_CACHE = Path("build/cache")
KERNEL_APPEND = "console=ttyS0 panic=-1 quiet"
MEMORY_MB = 512
BOOT_TIMEOUT = 300.0
REGENERATE = "python3 -m host_tools.testdata --out tests/data/ovmf"

LOG_NAME = "binary_bios_measurements"
BEGIN = "=====BEGIN {}====="
END = "=====END {}====="
DONE = "=====DONE====="

# /init for the capture initramfs.  Everything between marker lines is
# parsed by parse_serial(); kernel messages are silenced (printk level 1) so
# they cannot interleave with the blocks.
INIT_SCRIPT = r"""#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin 2>/dev/null
echo
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
echo 1 > /proc/sys/kernel/printk
L=/sys/kernel/security/tpm0/binary_bios_measurements
T=/sys/class/tpm/tpm0
echo "=====BEGIN info====="
echo "uname $(uname -r)"
echo "cmdline $(cat /proc/cmdline)"
echo "tpm_version_major $(cat $T/tpm_version_major 2>/dev/null)"
echo "uptime_at_init $(cut -d' ' -f1 /proc/uptime)"
if [ -r $L ]; then echo "log_sha256 $(sha256sum < $L | cut -d' ' -f1)"; fi
I=/sys/kernel/security/ima/ascii_runtime_measurements
if [ -r $I ]; then echo "ima_first $(head -n 1 $I)"; echo "ima_count $(wc -l < $I)"; fi
echo "=====END info====="
if [ -r $L ]; then
  echo "=====BEGIN binary_bios_measurements====="
  base64 $L
  echo "=====END binary_bios_measurements====="
fi
echo "=====BEGIN pcrs====="
for d in $T/pcr-*; do
  [ -d "$d" ] || continue
  b=${d##*/pcr-}
  n=0
  while [ $n -lt 24 ]; do
    echo "$b $n $(cat $d/$n)"
    n=$((n+1))
  done
done
echo "=====END pcrs====="
echo "uptime_at_end $(cut -d' ' -f1 /proc/uptime)"
echo "=====DONE====="
poweroff -f
"""


class CaptureError(RuntimeError):
    """The capture failed or produced inconsistent data."""


# ---------------------------------------------------------------- initramfs

def build_initramfs(busybox: Path = BUSYBOX, init_script: str = INIT_SCRIPT) -> bytes:
    """A deterministic gzip'd newc initramfs: /bin/busybox, /bin/sh, /init, /dev/console."""
    arc = CpioArchive(mtime=0)
    for d in ("bin", "dev", "proc", "sys", "tmp"):
        arc.add_dir(d)
    arc.add_file("bin/busybox", busybox.read_bytes(), mode=0o755)
    arc.add_symlink("bin/sh", "busybox")
    arc.add_chardev("dev/console", 5, 1, mode=0o600)
    arc.add_chardev("dev/null", 1, 3, mode=0o666)
    arc.add_file("init", init_script.encode(), mode=0o755)
    return arc.to_gzip()


# ------------------------------------------------------------ serial parsing

@dataclasses.dataclass
class SerialCapture:
    log: bytes
    pcrs: dict[str, dict[str, str]]  # bank -> {"0": hex, ...}
    info: dict[str, str]


_ANSI = re.compile(r"\x1b(\[[0-9;=?]*[A-Za-z]|[@-Z\\-_])")


def _block(lines: list[str], name: str) -> list[str]:
    """Lines strictly between the BEGIN and END markers of block *name*.

    A marker may be preceded on its line by leftovers (OVMF's screen-clearing
    escape sequences, a kernel message without a newline), so match the end.
    """
    begin, end = BEGIN.format(name), END.format(name)
    start = next((i for i, ln in enumerate(lines) if ln.endswith(begin)), None)
    if start is None:
        raise CaptureError(f"serial output has no {begin!r} line")
    stop = next((i for i in range(start + 1, len(lines)) if lines[i].endswith(end)), None)
    if stop is None:
        raise CaptureError(f"serial output has no {end!r} line after {begin!r}")
    return lines[start + 1:stop]


def parse_serial(text: str) -> SerialCapture:
    """Extract the event log, PCR values and info lines from the guest console."""
    lines = [_ANSI.sub("", ln).rstrip("\r") for ln in text.replace("\r\n", "\n").split("\n")]
    if not any(ln.endswith(DONE) for ln in lines):
        raise CaptureError("guest did not reach the end of /init (no DONE marker)")
    info: dict[str, str] = {}
    for ln in _block(lines, "info"):
        key, _, val = ln.partition(" ")
        info[key] = val
    b64 = _block(lines, LOG_NAME)
    bad = [ln for ln in b64 if not re.fullmatch(r"[A-Za-z0-9+/=]*", ln)]
    if bad:
        raise CaptureError(f"garbage inside the base64 block: {bad[:3]}")
    log = base64.b64decode("".join(b64), validate=True)
    want = info.get("log_sha256")
    if want and hashlib.sha256(log).hexdigest() != want:
        raise CaptureError("decoded log does not match the sha256 the guest printed")
    pcrs: dict[str, dict[str, str]] = {}
    for ln in _block(lines, "pcrs"):
        m = re.fullmatch(r"(sha\d+) (\d+) ([0-9A-Fa-f]+)", ln.strip())
        if not m:
            raise CaptureError(f"bad PCR line {ln!r}")
        pcrs.setdefault(m.group(1), {})[m.group(2)] = m.group(3).lower()
    if not pcrs:
        raise CaptureError("kernel exposed no /sys/class/tpm/tpm0/pcr-* banks")
    for bank, vals in pcrs.items():
        if sorted(vals, key=int) != [str(i) for i in range(24)]:
            raise CaptureError(f"bank {bank}: PCRs {sorted(vals)} instead of 0-23")
    return SerialCapture(log=log, pcrs=pcrs, info=info)


# ------------------------------------------------------------ tpm2_eventlog

@dataclasses.dataclass(frozen=True)
class EventSummary:
    pcr: int
    event_type: str


@dataclasses.dataclass
class EventlogReport:
    events: list[EventSummary]
    pcrs: dict[str, dict[int, str]]  # replayed: bank -> {pcr: hex}
    text: str
    digests: list[dict[str, str]] = dataclasses.field(default_factory=list)  # per event

    def event_digests(self, pcr: int, bank: str = "sha256") -> list[str]:
        """The *bank* digests of the events extended into *pcr*, in log order."""
        return [d[bank] for e, d in zip(self.events, self.digests)
                if e.pcr == pcr and bank in d]


def run_tpm2_eventlog(log_path: Path) -> EventlogReport:
    """Run ``tpm2_eventlog`` and parse its (YAML-ish, not valid YAML) output."""
    proc = subprocess.run(["tpm2_eventlog", str(log_path)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise CaptureError(f"tpm2_eventlog {log_path} failed ({proc.returncode}):\n"
                           f"{proc.stderr}{proc.stdout[-2000:]}")
    return parse_tpm2_eventlog(proc.stdout)


def parse_tpm2_eventlog(text: str) -> EventlogReport:
    events: list[EventSummary] = []
    digests: list[dict[str, str]] = []
    pcrs: dict[str, dict[int, str]] = {}
    lines = text.splitlines()
    pending_pcr: int | None = None
    alg: str | None = None
    in_pcrs = False
    bank: str | None = None
    for ln in lines:
        if not in_pcrs:
            if ln.startswith("pcrs:"):
                in_pcrs = True
                continue
            m = re.match(r"^\s*PCRIndex:\s*(\d+)\s*$", ln)
            if m:
                pending_pcr = int(m.group(1))
                continue
            m = re.match(r"^\s*EventType:\s*(\S+)\s*$", ln)
            if m and pending_pcr is not None:
                events.append(EventSummary(pending_pcr, m.group(1)))
                digests.append({})
                pending_pcr = None
                continue
            m = re.match(r"^\s*-?\s*AlgorithmId:\s*(\S+)\s*$", ln)
            if m:
                alg = m.group(1)
                continue
            m = re.match(r'^\s*Digest:\s*"?([0-9A-Fa-f]+)"?\s*$', ln)
            if m and alg is not None and digests:
                digests[-1][alg] = m.group(1).lower()
                alg = None
            continue
        m = re.match(r"^\s+(sha\d+):\s*$", ln)
        if m:
            bank = m.group(1)
            pcrs[bank] = {}
            continue
        m = re.match(r"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$", ln)
        if m and bank is not None:
            pcrs[bank][int(m.group(1))] = m.group(2).lower()
            continue
        if ln and not ln.startswith(" "):
            in_pcrs = False
    if not events:
        raise CaptureError("tpm2_eventlog printed no events")
    if not pcrs:
        raise CaptureError("tpm2_eventlog printed no pcrs: section")
    return EventlogReport(events=events, pcrs=pcrs, text=text, digests=digests)


def check_replay(report: EventlogReport, pcrs: dict[str, dict[str, str]],
                 required_bank: str = "sha256") -> list[str]:
    """Compare replayed PCRs with captured ones; return human-readable mismatches.

    Every PCR that the log extends, in every bank present in both, must match.
    *required_bank* must be present in both.
    """
    problems: list[str] = []
    if required_bank not in report.pcrs:
        problems.append(f"tpm2_eventlog replayed no {required_bank} bank")
    if required_bank not in pcrs:
        problems.append(f"no captured {required_bank} PCRs")
    for bank in sorted(set(report.pcrs) & set(pcrs)):
        for idx, val in sorted(report.pcrs[bank].items()):
            got = pcrs[bank].get(str(idx))
            if got != val:
                problems.append(f"{bank} PCR {idx}: log replays to {val}, TPM has {got}")
    return problems


# ----------------------------------------------------------------- booting

@dataclasses.dataclass
class BootResult:
    serial: str
    seconds: float
    seconds_to_init: float | None
    returncode: int | None
    command: list[str]


def qemu_command(kernel: Path, initrd: Path, vars_copy: Path, tpm: Swtpm, serial: Path,
                 append: str = KERNEL_APPEND, memory_mb: int = MEMORY_MB) -> list[str]:
    return [
        QEMU, "-machine", "q35", "-accel", "tcg", "-m", str(memory_mb),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-serial", f"file:{serial}",
        "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,file={vars_copy}",
        *tpm.qemu_args(),
        "-nic", "none",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
    ]


def boot_and_capture(kernel: Path, initrd: Path, state_dir: Path, workdir: Path, *,
                     timeout: float = BOOT_TIMEOUT, append: str = KERNEL_APPEND,
                     memory_mb: int = MEMORY_MB, verbose: bool = True) -> BootResult:
    """Boot once with swtpm state *state_dir*; return the serial output.

    swtpm and QEMU are always stopped by PID (also on errors and Ctrl-C).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    vars_copy = workdir / "OVMF_VARS_4M.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    serial = workdir / "serial.log"
    serial.write_bytes(b"")
    qemu: subprocess.Popen[bytes] | None = None
    with Swtpm(state_dir, workdir / "sock", log_file=workdir / "swtpm.log") as tpm:
        cmd = qemu_command(kernel, initrd, vars_copy, tpm, serial, append, memory_mb)
        qemu_err = workdir / "qemu.stderr"
        start = time.monotonic()
        to_init: float | None = None
        try:
            with open(qemu_err, "wb") as err:
                qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        start_new_session=True)
            while qemu.poll() is None:
                elapsed = time.monotonic() - start
                if to_init is None and b"=====BEGIN info" in serial.read_bytes():
                    to_init = elapsed
                    if verbose:
                        print(f"  /init reached after {elapsed:.1f} s", file=sys.stderr)
                if elapsed > timeout:
                    raise CaptureError(f"boot did not finish within {timeout:.0f} s; "
                                       f"serial output so far:\n{_tail(serial)}")
                time.sleep(0.05)
            seconds = time.monotonic() - start
        finally:
            stop_process(qemu)
    assert qemu is not None
    text = serial.read_bytes().decode(errors="replace")
    if qemu.returncode != 0:
        raise CaptureError(f"QEMU exited with {qemu.returncode}: "
                           f"{qemu_err.read_text(errors='replace')}\n{text[-2000:]}")
    return BootResult(serial=text, seconds=seconds, seconds_to_init=to_init,
                      returncode=qemu.returncode, command=cmd)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_bytes()[-n:].decode(errors="replace")


# ------------------------------------------------------------ capture + write

@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    description: str
    pcr_banks: tuple[str, ...] | None  # None: empty state dir (all banks)
    create_certs: bool = False


ALL_BANKS = Variant("all-banks", "empty swtpm state directory (all four PCR banks active)", None)
SHA256_ONLY = Variant(
    "sha256", "state made by swtpm_setup with only the sha256 bank active, EK and platform "
    "certificates from a throw-away local CA (like a provisioned device)", ("sha256",), True)


@dataclasses.dataclass
class Capture:
    variant: Variant
    serial: SerialCapture
    boot: BootResult
    eventlog: EventlogReport
    setup_command: str | None


def capture(variant: Variant, kernel: Kernel, initrd: Path, workdir: Path, *,
            timeout: float = BOOT_TIMEOUT, verbose: bool = True) -> Capture:
    """Prepare the swtpm state for *variant*, boot, parse and check the replay."""
    state = workdir / "tpmstate"
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    setup_cmd: str | None = None
    if variant.pcr_banks is not None:
        swtpm_setup(state, variant.pcr_banks, create_certs=variant.create_certs,
                    workdir=workdir / "ca")
        setup_cmd = ("swtpm_setup --tpm2 --tpmstate DIR --config <private swtpm_setup.conf> "
                     f"--pcr-banks {','.join(variant.pcr_banks)} --overwrite"
                     + (" --create-ek-cert --create-platform-cert" if variant.create_certs
                        else ""))
    boot = boot_and_capture(kernel.vmlinuz, initrd, state, workdir, timeout=timeout,
                            verbose=verbose)
    (workdir / "serial.txt").write_text(boot.serial)
    sc = parse_serial(boot.serial)
    log_path = workdir / LOG_NAME
    log_path.write_bytes(sc.log)
    report = run_tpm2_eventlog(log_path)
    problems = check_replay(report, sc.pcrs)
    problems += check_ima_pcr10(sc)
    problems += check_pcr9(report, sc.info.get("cmdline", ""), initrd.read_bytes())
    if problems:
        raise CaptureError("event log replay does not match the TPM's PCRs:\n  "
                           + "\n  ".join(problems))
    return Capture(variant, sc, boot, report, setup_cmd)


def check_pcr9(report: EventlogReport, cmdline: str, initrd: bytes) -> list[str]:
    """PCR 9 (Linux EFI stub): sha256 of the load options as UTF-16LE + NUL, then of the initrd.

    *cmdline* is what the guest saw in /proc/cmdline (OVMF appended ``initrd=initrd``).
    """
    want = [hashlib.sha256((cmdline + "\0").encode("utf-16-le")).hexdigest(),
            hashlib.sha256(initrd).hexdigest()]
    got = report.event_digests(9, "sha256")
    return [] if got == want else [f"PCR 9 sha256 events {got}, expected {want} "
                                   f"(load options {cmdline!r} + initrd)"]


def reset_value(bank_hex_len: int, pcr: int) -> str:
    """A PCR's value after TPM2_Startup(CLEAR) without DRTM: ones for 17-22, else zeros."""
    return ("f" if 17 <= pcr <= 22 else "0") * bank_hex_len


def unlogged_changed_pcrs(report: EventlogReport, pcrs: dict[str, dict[str, str]]) -> list[int]:
    """PCRs that the firmware log does not touch but that differ from their reset value."""
    logged = {e.pcr for e in report.events}
    out = set()
    for vals in pcrs.values():
        for k, v in vals.items():
            if int(k) not in logged and v != reset_value(len(v), int(k)):
                out.add(int(k))
    return sorted(out)


def check_ima_pcr10(sc: SerialCapture) -> list[str]:
    """If IMA logged exactly one entry (boot_aggregate), sha1 PCR 10 must be its extend.

    IMA's ascii list shows the sha1 template digest, so only the sha1 bank can
    be checked this way; returns mismatches (empty when not applicable).
    """
    first = sc.info.get("ima_first", "").split()
    if sc.info.get("ima_count") != "1" or len(first) < 2 or "sha1" not in sc.pcrs:
        return []
    want = hashlib.sha1(bytes(20) + bytes.fromhex(first[1])).hexdigest()
    got = sc.pcrs["sha1"]["10"]
    return [] if got == want else [f"sha1 PCR 10 {got} is not IMA's boot_aggregate extend {want}"]


def _pkg_version(pkg: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"


def _qemu_version() -> str:
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _display_command(cmd: Sequence[str], workdir: Path, kernel: Kernel) -> str:
    """The QEMU command line with temporary paths replaced by placeholders."""
    subs = [(str(workdir / "sock"), "$SOCKDIR"), (str(workdir), "$WORK"),
            (str(workdir.parent / "initrd.cpio.gz"), "$INITRD"),
            (str(kernel.vmlinuz), f"build/cache/kernel/root/boot/{kernel.vmlinuz.name}")]
    out = []
    for a in cmd:
        for old, new in subs:
            a = a.replace(old, new)
        out.append(a)
    return shlex.join(out)


def pcr_event_table(events: Sequence[EventSummary]) -> str:
    by_pcr: dict[int, list[str]] = {}
    for e in events:
        by_pcr.setdefault(e.pcr, []).append(e.event_type)
    if events and (events[0].pcr, events[0].event_type) == (0, "EV_NO_ACTION"):
        by_pcr[0][0] = "(EV_NO_ACTION: Spec ID header, not extended)"
    rows = ["| PCR | events (in log order) |", "|---|---|"]
    for pcr in sorted(by_pcr):
        rows.append(f"| {pcr} | {', '.join(by_pcr[pcr])} |")
    return "\n".join(rows)


def write_vectors(cap: Capture, out: Path, kernel: Kernel, initrd_sha256: str,
                  workdir: Path, regenerate: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_NAME).write_bytes(cap.serial.log)
    pcrs = {bank: {str(i): cap.serial.pcrs[bank][str(i)] for i in range(24)}
            for bank in sorted(cap.serial.pcrs, key=lambda b: int(b[3:]))}
    (out / "pcrs.json").write_text(json.dumps(pcrs, indent=2) + "\n")
    log_pcrs = sorted({e.pcr for e in cap.eventlog.events})
    unlogged = unlogged_changed_pcrs(cap.eventlog, cap.serial.pcrs)
    ima_first = cap.serial.info.get("ima_first", "")
    ima_note = "."
    if unlogged == [10] and ima_first:
        ima_note = (": the kernel's IMA extends PCR 10 with `boot_aggregate` (in IMA's own list "
                    f"`/sys/kernel/security/ima/ascii_runtime_measurements`, here "
                    f"{cap.serial.info.get('ima_count', '?')} entry: `{ima_first}`"
                    + ("; the sha1 PCR 10 was checked against it)." if "sha1" in cap.serial.pcrs
                       else ")."))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    state = ("swtpm manufactures the TPM on its first start"
             if cap.setup_command is None else f"made with `{cap.setup_command}`")
    readme = f"""# Measured-boot test vectors: OVMF + swtpm, {cap.variant.name}

Captured by `host_tools/testdata.py` on {now}. Regenerate (both variants) with:

    {regenerate}

(this overwrites these files; the values change with the OVMF, kernel and QEMU versions and
with the initramfs, see below).

## Files
- `{LOG_NAME}`: the raw TCG PC Client (crypto-agile, TCG_PCR_EVENT2) firmware event log, as read
  by the guest from `/sys/kernel/security/tpm0/{LOG_NAME}`; {len(cap.serial.log)} bytes,
  {len(cap.eventlog.events)} events (Spec ID header included), sha256
  `{hashlib.sha256(cap.serial.log).hexdigest()}`.
- `pcrs.json`: PCRs 0-23 of every bank the kernel exposed
  (`/sys/class/tpm/tpm0/pcr-<bank>/<N>`), read in the same boot right after the log:
  banks {", ".join(pcrs)}. Format `{{"<bank>": {{"<N>": "<lowercase hex>"}}}}`.

## Set-up
- TPM: `{swtpm_version()}` (Debian swtpm {_pkg_version("swtpm")}),
  `swtpm socket --tpm2 --tpmstate dir=DIR --ctrl type=unixio,path=SOCK` (QEMU passes the data channel over ctrl)
  without `--flags startup-clear` (OVMF sends TPM2_Startup). State: {cap.variant.description};
  {state}.
- Firmware: Debian `ovmf` {_pkg_version("ovmf")}, `{OVMF_CODE}` (read-only pflash) + a fresh copy
  of `{OVMF_VARS}`.
- Kernel: Debian `{kernel.package}` {kernel.package_version} (`uname -r`: {cap.serial.info.get("uname", "?")}),
  via `apt-get download` + `dpkg -x`, direct kernel boot (`-kernel/-initrd`).
- Initramfs: built by `host_tools.testdata.build_initramfs()` (deterministic cpio newc + gzip:
  `/bin/busybox` from Debian busybox-static {_pkg_version("busybox-static")} and an `/init`
  script), sha256 `{initrd_sha256}`. Its `/init` mounts proc, sysfs and securityfs and prints the
  log (base64) and the PCRs on ttyS0 between marker lines, then `poweroff -f`.
- Kernel command line as seen by the guest: `{cap.serial.info.get("cmdline", "?")}`.
- QEMU: {_qemu_version()}, TCG (never KVM). Command line:

      {_display_command(cap.boot.command, workdir, kernel)}

- Boot time: {cap.boot.seconds:.1f} s from QEMU start to power-off
  (/init reached after {cap.boot.seconds_to_init or 0:.1f} s).

## Check done before writing
`tpm2_eventlog {LOG_NAME}` (tpm2-tools {_pkg_version("tpm2-tools")}) replays the log; its `pcrs:`
values equal the captured values for every PCR in the log ({", ".join(map(str, log_pcrs))}) in
every bank ({", ".join(sorted(cap.eventlog.pcrs))}). PCRs not in the log hold their reset value
(zeros, all ones for 17-22) except {", ".join(map(str, unlogged)) or "none"}{ima_note}

PCR 9 was checked too: its two EV_EVENT_TAG events (Linux EFI stub) are the sha256 of the load
options `{cap.serial.info.get("cmdline", "?")}` as UTF-16LE with a NUL (OVMF appended
` initrd=initrd` to `-append`), then the sha256 of the initramfs file.

Note: with direct kernel boot PCR 4 holds the Authenticode digest of the kernel *as patched by
QEMU* (it changes with `-m` and with the initrd size), so these PCR 4 values are not those of
the kernel file.

## Events per PCR
{pcr_event_table(cap.eventlog.events)}
"""
    (out / "README.md").write_text(readme)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Capture OVMF + swtpm measured-boot test vectors under QEMU (TCG).")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="directory for the all-banks capture (default %(default)s)")
    ap.add_argument("--out-sha256", type=Path, default=None,
                    help="directory for the sha256-only capture (default: <out>-sha256)")
    ap.add_argument("--variant", choices=("all-banks", "sha256", "both"), default="both")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="download cache (kernel goes to <cache>/kernel)")
    ap.add_argument("--timeout", type=float, default=BOOT_TIMEOUT, help="per boot, seconds")
    ap.add_argument("--keep-work", type=Path, default=None,
                    help="keep serial logs, swtpm logs and state in this directory")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop QEMU and swtpm.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    out_sha = args.out_sha256 or args.out.with_name(args.out.name + "-sha256")
    todo: list[tuple[Variant, Path]] = []
    if args.variant in ("all-banks", "both"):
        todo.append((ALL_BANKS, args.out))
    if args.variant in ("sha256", "both"):
        todo.append((SHA256_ONLY, out_sha))

    regenerate = REGENERATE if (args.out == DEFAULT_OUT and args.out_sha256 is None) else \
        shlex.join(["python3", "-m", "host_tools.testdata", *(argv or sys.argv[1:])])
    try:
        kernel = fetch_kernel(args.cache / "kernel")
        print(f"kernel: {kernel.package} {kernel.package_version} ({kernel.vmlinuz})",
              file=sys.stderr)
        with contextlib.ExitStack() as stack:
            if args.keep_work is not None:
                base = args.keep_work.resolve()
                base.mkdir(parents=True, exist_ok=True)
            else:
                base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="testdata-")))
            initrd_bytes = build_initramfs()
            initrd = base / "initrd.cpio.gz"
            initrd.write_bytes(initrd_bytes)
            initrd_sha = hashlib.sha256(initrd_bytes).hexdigest()
            for variant, out in todo:
                print(f"capturing {variant.name} -> {out}", file=sys.stderr)
                wd = base / variant.name
                cap = capture(variant, kernel, initrd, wd, timeout=args.timeout)
                write_vectors(cap, out, kernel, initrd_sha, wd, regenerate)
                banks = ", ".join(sorted(cap.serial.pcrs))
                print(f"  ok: {cap.boot.seconds:.1f} s boot, {len(cap.serial.log)} byte log, "
                      f"{len(cap.eventlog.events)} events, banks {banks}; replay matches",
                      file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CaptureError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
