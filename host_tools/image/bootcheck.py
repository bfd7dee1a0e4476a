"""Development check: boot a built disk once under QEMU and read back PCRs and the event log.

QEMU gets ``-fw_cfg name=opt/org.trustedphone/pcrdump,string=1``, so the image's /init prints
the sha256 PCRs and the firmware event log (base64) between markers before it starts the stage
loader (fw_cfg is not measured into the policy PCRs: the image checked is the one users boot).
If the stage loader then brings up the phone console, its ``pcrs`` command gives the PCRs after
PCR 14 was closed.  The full runner with per-device state is ``host_tools.qemu``; this only
exists so the image tests can compare predicted with measured PCRs.

    python -m host_tools.image.bootcheck build/qemu-x86_64
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from host_tools import board as boards
from host_tools.qemu.device import RNG_ARGS
from host_tools.swtpm_proc import Swtpm, stop_process

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OVMF_CODE_SECBOOT = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
SECBOOT_ARGS = ("-global", "driver=cfi.pflash01,property=secure,value=on")
ENROLLED_VARS_NAME = "OVMF_VARS.secboot.fd"  # host_tools/image/secureboot.py
FW_CFG_SWITCH = "name=opt/org.trustedphone/pcrdump,string=1"
CONSOLE_PROMPT = "phone> "
PCRS_BEGIN, PCRS_END = "-----BEGIN PCRS-----", "-----END PCRS-----"
LOG_BEGIN, LOG_END = "-----BEGIN EVENTLOG-----", "-----END EVENTLOG-----"


class BootError(RuntimeError):
    """QEMU died, or the console never showed the expected markers; carries the console."""


@dataclass(frozen=True)
class BootDump:
    pcrs: dict[int, bytes]  # sha256 bank, read by /init before the stage loader ran
    eventlog: bytes
    console: str
    seconds_to_dump: float
    pcrs_after_stage: dict[int, bytes] | None  # from the phone console, None if it never came
    seconds_to_prompt: float | None  # QEMU start to the phone console's first prompt


def _between(text: str, begin: str, end: str) -> list[str]:
    start = text.index(begin) + len(begin)
    return [ln.strip() for ln in text[start:text.index(end, start)].splitlines() if ln.strip()]


def parse_console(text: str) -> tuple[dict[int, bytes], bytes]:
    pcrs: dict[int, bytes] = {}
    for line in _between(text, PCRS_BEGIN, PCRS_END):
        bank, idx, value = line.split()
        if bank == "sha256":
            pcrs[int(idx)] = bytes.fromhex(value)
    log = base64.b64decode("".join(_between(text, LOG_BEGIN, LOG_END)))
    return pcrs, log


def qemu_command(disk: Path, vars_copy: Path, tpm_args: list[str], memory_mb: int,
                 secure_boot: bool = False, board: str = "qemu-x86_64") -> list[str]:
    # the board's machine and firmware (board.json emulator); on qemu-x86_64 Secure Boot is the
    # SMM build of OVMF, q35 with SMM, secure pflash (host_tools/qemu/device.py)
    emu = boards.emulator(boards.description(board))
    code = emu.firmware_code_secure_boot if secure_boot else emu.firmware_code
    return [emu.binary, "-machine", emu.machine_secure_boot if secure_boot else emu.machine,
            *(("-cpu", emu.cpu) if emu.cpu else ()),
            "-accel", "tcg", "-m", str(memory_mb),
            "-nodefaults", "-display", "none", "-serial", "stdio", "-nic", "none",
            *(emu.secure_boot_args if secure_boot else ()),
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-drive", f"if=virtio,format=raw,file={disk}", *RNG_ARGS,
            "-fw_cfg", FW_CFG_SWITCH, *tpm_args]


def parse_console_pcrs(answer: str) -> dict[int, bytes]:
    """The phone console's ``pcrs`` answer: one JSON object {"sha256": {"N": hex}}."""
    for line in answer.splitlines():
        line = line.strip()
        if line.startswith("{"):
            obj = json.loads(line)
            return {int(k): bytes.fromhex(v) for k, v in obj["sha256"].items()}
    raise BootError(f"no JSON in the console's pcrs answer: {answer[-2000:]!r}")


def boot_and_dump(disk: Path, memory_mb: int = 512, timeout: float = 300.0,
                  stage_timeout: float = 180.0) -> BootDump:
    """Boot a throw-away copy of *disk* with a fresh swtpm; return what /init printed. With
    Secure Boot when the build wrote its enrolled variable store beside the disk. The board is
    the one reference.json beside the disk names (qemu-x86_64 without one)."""
    enrolled = disk.parent / ENROLLED_VARS_NAME
    ref_path = disk.parent / "reference.json"
    board = (str(json.loads(ref_path.read_text()).get("board", "qemu-x86_64"))
             if ref_path.is_file() else "qemu-x86_64")
    emu = boards.emulator(boards.description(board))
    with tempfile.TemporaryDirectory(prefix="bootcheck-") as tmp:
        work = Path(tmp)
        shutil.copyfile(disk, work / "disk.img")  # the guest may write to its data partition
        shutil.copyfile(enrolled if enrolled.is_file() else emu.firmware_vars,
                        work / "OVMF_VARS.fd")
        with Swtpm(work / "tpm", work / "sock") as tpm:
            cmd = qemu_command(work / "disk.img", work / "OVMF_VARS.fd",
                               tpm.qemu_args(emu.tpm_device), memory_mb, enrolled.is_file(),
                               board)
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            chunks: list[bytes] = []

            def reader() -> None:
                stream = proc.stdout
                assert stream is not None
                fd = stream.fileno()
                while True:
                    block = os.read(fd, 65536)
                    if not block:
                        return
                    chunks.append(block)

            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            def text() -> str:
                return b"".join(chunks).decode(errors="replace")

            def wait_for(marker: str, start: int, limit: float) -> int:
                deadline = time.monotonic() + limit
                while True:
                    pos = text().find(marker, start)
                    if pos >= 0:
                        return pos
                    if proc.poll() is not None:
                        return -1
                    if time.monotonic() > deadline:
                        raise BootError(f"no {marker!r} after {limit} s:\n{text()[-4000:]}")
                    time.sleep(0.2)

            try:
                end = wait_for(LOG_END, 0, timeout)
                if end < 0:
                    raise BootError(f"QEMU exited with {proc.returncode} before the PCR dump:"
                                    f"\n{text()[-4000:]}")
                seen = time.monotonic() - t0
                after: dict[int, bytes] | None = None
                to_prompt: float | None = None
                assert proc.stdin is not None
                prompt = wait_for(CONSOLE_PROMPT, end, stage_timeout)
                if prompt >= 0:
                    to_prompt = time.monotonic() - t0
                    proc.stdin.write(b"pcrs\n")
                    proc.stdin.flush()
                    answer = wait_for(CONSOLE_PROMPT, prompt + len(CONSOLE_PROMPT), 60)
                    after = parse_console_pcrs(text()[prompt + len(CONSOLE_PROMPT):answer])
                    proc.stdin.write(b"poweroff\n")
                    proc.stdin.flush()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            finally:
                stop_process(proc, 5.0)
                thread.join(timeout=5)
            console = text()
    pcrs, log = parse_console(console)
    return BootDump(pcrs, log, console, seen, after, to_prompt)


def compare(reference: dict[str, object], measured: dict[int, bytes], pcrs: list[int]
            ) -> list[str]:
    """Lines naming each PCR whose prediction differs from what the TPM holds."""
    predicted = reference["pcrs"]
    assert isinstance(predicted, dict)
    out = []
    for p in pcrs:
        want = predicted["sha256"].get(str(p))
        got = measured.get(p)
        if got is None or want != got.hex():
            out.append(f"PCR {p}: predicted {want}, TPM has {got.hex() if got else None}")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m host_tools.image.bootcheck")
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--pcrs", help="PCRs to compare (default 4,5,7,9,11,12 and the board's "
                    "component register, reference.json bundle.pcr)")
    ap.add_argument("--save-log", type=Path, help="write the firmware event log here")
    ap.add_argument("--save-console", type=Path)
    args = ap.parse_args(argv)
    reference = json.loads((args.build_dir / "reference.json").read_text())
    dump = boot_and_dump(args.build_dir / "disk.img")
    if args.save_log:
        args.save_log.write_bytes(dump.eventlog)
    if args.save_console:
        args.save_console.write_text(dump.console)
    print(f"bootcheck: PCR dump after {dump.seconds_to_dump:.1f} s, phone prompt after "
          + (f"{dump.seconds_to_prompt:.1f} s" if dump.seconds_to_prompt else "(none)"))
    component = int(reference["bundle"]["pcr"])  # the board's component register
    wanted = ([int(p) for p in args.pcrs.split(",")] if args.pcrs
              else [4, 5, 7, 9, 11, 12, component])
    bad = compare(reference, dump.pcrs, [p for p in wanted if p != component])
    if component in wanted:
        if dump.pcrs_after_stage is None:
            bad.append(f"PCR {component}: the phone console never came up to read it")
        else:
            bad += compare(reference, dump.pcrs_after_stage, [component])
    for line in bad:
        print("bootcheck: " + line)
    for p, v in sorted(dump.pcrs.items()):
        print(f"bootcheck: TPM PCR {p:>2} {v.hex()}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
