"""python -m host_tools.flash --port URL [FILE] [--uki PKG [--uki-base UKI]] [--policy POLICY] [--test] [--reset]

Uploads FILE (a vendor-signed bundle, build/<board>/bundle.tar) into the phone's inactive slot
over MCUmgr SMP, with a progress bar on stderr; an interrupted upload of the same file resumes
where the device stopped. ``--test`` then marks it to boot once (the phone confirms it itself
when it reaches ready, else the next boot reverts); ``--reset`` reboots the phone.
``--policy POLICY`` (the signed PCR policy file `python -m host_tools.update --policy-out`
writes) is uploaded after FILE over SMP file management (group 8) to /policy/<version>.json; the
phone's root broker checks it against the sealed store and adds it, so the new image unseals.
``--uki PKG`` (build/<board>/uki.tar, a vendor-signed UKI package) goes to MCUmgr image 1, the
inactive UKI bank on the ESP; with ``--uki-base UKI`` (the UKI the phone runs now, e.g. the
installed release's BOOTX64.EFI) only a delta against it crosses the line, and the phone
rebuilds the UKI and checks it against the signed SHA-256. ``--test`` marks both for one boot.
One line per outcome on stdout; exit 0 done, 1 refused by the device, 2 bad usage, 3 link failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from firmware.smp import header as H
from host_tools.flash.client import FlashError, SmpLink, Timeout
from host_tools.flash.uki import UkiPackageError, uki_payload

# IMG_MGMT_ERR (Zephyr img_mgmt.h) and MGMT_ERR names, for the outcome line
IMG_ERRORS = {1: "unknown", 9: "no free slot", 12: "flash write failed", 14: "invalid slot",
              20: "invalid offset", 21: "invalid length", 22: "invalid image",
              24: "invalid hash", 27: "current version is newer (anti-rollback)",
              28: "image already pending", 30: "image too large", 31: "data overrun",
              32: "confirmation denied"}
MGMT_ERRORS = {1: "EUNKNOWN", 3: "EINVAL", 6: "EBADSTATE", 8: "ENOTSUP"}
# FS_MGMT_ERR (Zephyr fs_mgmt.h), file management's group errors
FS_ERRORS = {1: "unknown", 2: "invalid file name", 10: "file write failed", 11: "offset not valid"}


class Refused(FlashError):
    pass


def check(body: dict[str, Any], link: SmpLink) -> dict[str, Any]:
    err = body.get("err")
    rc = body.get("rc", 0)
    if isinstance(err, dict):
        code = err.get("rc")
        group = err.get("group")
        table = {H.GROUP_IMAGE: IMG_ERRORS, H.GROUP_FS: FS_ERRORS}.get(group, {}) if isinstance(group, int) else {}
        name = table.get(code, f"error {code}") if isinstance(code, int) else f"error {code}"
        raise Refused(f"refused: {name}" + _why(link))
    if rc:
        raise Refused(f"refused: {MGMT_ERRORS.get(rc, rc)}" +
                      (f" ({body['rsn']})" if isinstance(body.get("rsn"), str) else _why(link)))
    return body


def _why(link: SmpLink) -> str:
    """The device's own explanation: the last `update refused:` line it printed."""
    for line in reversed(link.text):
        if "refused:" in line:
            return " — " + line.split("refused:", 1)[1].strip()
    return ""


class Progress:
    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out, self.start = total, out, time.monotonic()
        self.tty = out.isatty()
        self.last = -1.0

    def show(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        pct = 100 * done // max(self.total, 1)
        rate = done / max(now - self.start, 1e-6)
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        end = "\n" if final or not self.tty else ""
        self.out.write(f"\r[{bar}] {pct:3d}% {done}/{self.total} B {rate / 1000:.1f} kB/s{end}")
        self.out.flush()


def upload(link: SmpLink, image: bytes, progress: Progress, chunk: int, number: int = 0) -> tuple[int, bool]:
    """(offset the device resumed from, match) after the whole image is on the device."""
    sha = hashlib.sha256(image).digest()
    first = {"image": number, "len": len(image), "off": 0, "sha": sha, "data": image[:chunk]}
    body = check(link.request(H.OP_WRITE, H.GROUP_IMAGE, H.IMG_UPLOAD, first), link)
    off = _off(body, len(image))
    resumed = off if off > min(chunk, len(image)) else 0
    while off < len(image):
        progress.show(off)
        req = {"off": off, "data": image[off:off + chunk]}
        body = check(link.request(H.OP_WRITE, H.GROUP_IMAGE, H.IMG_UPLOAD, req), link)
        off = _off(body, len(image))
    progress.show(off, final=True)
    return resumed, body.get("match") is True


def send(link: SmpLink, data: bytes, chunk: int, number: int, what: str) -> str:
    """Upload *data* as image *number* with a progress bar; -> " in T s (resumed at byte N)".
    Refused when the device does not confirm the whole file's SHA-256."""
    t0 = time.monotonic()
    resumed, match = upload(link, data, Progress(len(data), sys.stderr), chunk, number)
    if not match:
        raise Refused(f"refused: the device did not confirm the {what}'s SHA-256" + _why(link))
    return f" in {time.monotonic() - t0:.1f} s" + (f" (resumed at byte {resumed})" if resumed else "")


def upload_file(link: SmpLink, name: str, data: bytes, chunk: int) -> None:
    """MCUmgr SMP file management, file upload (group 8, command 0): {"off", "data", "name",
    "len" with off 0}; the answer's "off" is where to continue."""
    off = 0
    while True:
        req: dict[str, Any] = {"off": off, "data": data[off:off + chunk], "name": name}
        if off == 0:
            req["len"] = len(data)
        off = _off(check(link.request(H.OP_WRITE, H.GROUP_FS, H.FS_FILE, req), link), len(data))
        if off >= len(data):
            return


def policy_name(data: bytes) -> str:
    """The device name of a policy file (host_tools/update/policy_file.py device_name)."""
    doc = json.loads(data)
    return f"/policy/{doc['entry']['image_version']}.json"


def _off(body: dict[str, Any], total: int) -> int:
    off = body.get("off")
    if not isinstance(off, int) or off < 0 or off > total:
        raise FlashError(f"device answered an invalid offset {off!r}")
    return off


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.flash", description=__doc__.split("\n")[0])
    ap.add_argument("--port", required=True, help="pyserial URL: /dev/ttyUSB0, socket://host:port, rfc2217://...")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per answer before a resend")
    ap.add_argument("--test", action="store_true", help="mark the image to boot once after upload")
    ap.add_argument("--reset", action="store_true", help="reboot the phone afterwards")
    ap.add_argument("--policy", type=Path, help="signed PCR policy file to deliver (host_tools.update --policy-out)")
    ap.add_argument("--uki", type=Path, help="vendor-signed UKI package for image 1 (build/<board>/uki.tar)")
    ap.add_argument("--uki-base", type=Path, help="the UKI the phone runs: send only a delta against it")
    ap.add_argument("file", type=Path, nargs="?")
    args = ap.parse_args(argv)
    if args.file is None and args.policy is None and args.uki is None:
        ap.error("give FILE, --uki PKG, --policy POLICY, or several")
    if args.uki_base is not None and args.uki is None:
        ap.error("--uki-base needs --uki")
    image, policy, uki, uki_sha = b"", b"", b"", b""
    try:
        for path in (args.file, args.policy, args.uki, args.uki_base):
            if path is not None and not path.read_bytes():
                print(f"{path} is empty", file=sys.stderr)
                return 2
        image = args.file.read_bytes() if args.file is not None else b""
        policy = args.policy.read_bytes() if args.policy is not None else b""
        name = policy_name(policy) if policy else ""
        if args.uki is not None:
            uki, uki_sha = uki_payload(args.uki.read_bytes(),
                                       args.uki_base.read_bytes() if args.uki_base else None)
    except OSError as e:
        print(f"cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except UkiPackageError as e:
        print(f"{args.uki}: {e}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as e:
        print(f"{args.policy} is not a signed policy file ({e.__class__.__name__})", file=sys.stderr)
        return 2
    try:
        link = SmpLink.open(args.port, args.baud, timeout=args.timeout)
    except FlashError as e:
        print(e)
        return 3
    try:
        params = link.request(H.OP_READ, H.GROUP_OS, H.OS_MCUMGR_PARAMS, {})
        raw = params.get("buf_size")
        buf = raw if isinstance(raw, int) else 512
        # what fits one frame: the buffer minus header, CBOR keys and the base64-free overhead
        chunk = max(64, min(buf, 4096) - 64)
        if image:
            how = send(link, image, chunk, 0, "image")
            print(f"uploaded {len(image)} bytes{how}: slot 1 holds "
                  f"{hashlib.sha256(image).hexdigest()[:16]}, checked by the device")
        if uki:
            how = send(link, uki, chunk, 1, "UKI package")
            print(f"uploaded the UKI package ({len(uki)} bytes{', a delta' if args.uki_base else ''})"
                  f"{how}: image 1 slot 1 holds UKI {uki_sha.hex()[:16]}, rebuilt and checked by "
                  f"the device")
        if policy:
            upload_file(link, name, policy, chunk)
            print(f"signed PCR policy {name} added to the phone's sealed store (checked by the device)")
        if args.test and image:
            sha = hashlib.sha256(image).digest()
            check(link.request(H.OP_WRITE, H.GROUP_IMAGE, H.IMG_STATE, {"hash": sha, "confirm": False}), link)
            print("marked for test: boots once, reverts unless the phone confirms it")
        if args.test and uki:
            check(link.request(H.OP_WRITE, H.GROUP_IMAGE, H.IMG_STATE, {"hash": uki_sha, "confirm": False}), link)
            print("UKI marked for test: the firmware boots it once (BootNext), reverts unless the "
                  "phone confirms it")
        if args.reset:
            check(link.request(H.OP_WRITE, H.GROUP_OS, H.OS_RESET, {}), link)
            print("reset requested")
        return 0
    except Refused as e:
        sys.stderr.write("\n")
        print(e)
        return 1
    except Timeout as e:
        sys.stderr.write("\n")
        print(f"link failed: {e}; run the same command again to resume")
        return 3
    except FlashError as e:
        sys.stderr.write("\n")
        print(f"link failed: {e}")
        return 3
    finally:
        link.close()


if __name__ == "__main__":
    sys.exit(main())
