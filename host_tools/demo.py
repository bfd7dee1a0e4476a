"""``make demo``: the product's main job in one command.

    python -m host_tools.demo [--device NAME] [--keep] [--no-build]

1. builds the image (``host_tools.image``; reproducible, a few seconds),
2. provisions a fresh device (``build/devices/NAME/`` removed first unless ``--keep``) with the
   SIP account alice, sealed to the predicted PCRs,
3. starts a Kamailio over TLS on 127.0.0.1:5061 (server certificate from the image's development
   CA, for 10.0.2.2 = the host seen from the guest) and a baresip registered as bob (answers
   automatically, plays a 600 Hz tone, records what it hears), both in a temp dir,
4. boots the phone under QEMU + swtpm with networking, streaming its console (the stage loader's
   PCR 14 measurements),
5. fetches both event logs and the PCRs over the console and runs the verifier against
   reference.json (``host_tools.qemu.verify``: PCR 10 left out),
6. shows ``status`` (unsealed, registered), calls bob with a 1 kHz tone, shows the call's SRTP
   suite and padlock, hangs up after ~3 s and checks by frequency what baresip recorded,
7. powers the phone off and prints a summary.

Exit status 0 only when every step succeeded; otherwise the failed step is named, everything
started is stopped by PID, and the status is 1 (130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, cast

from firmware.phone import tone as _tone
from host_tools.console import Console, ConsoleError, ConsoleTimeout, last_line
from host_tools.qemu.device import BOARD, REPO, Device, DeviceConfig, DeviceError, Running
from host_tools.qemu.verify import fetch_evidence, verifier_command
from host_tools.siplab import (HAVE_BARESIP, HAVE_KAMAILIO, IS_ROOT, USERS, Baresip, Kamailio,
                               SipLabError, make_server_cert, port_free, read_wav)

# Typed views of the (unannotated, MicroPython-subset) tone helpers.
sine_pcm = cast(Callable[..., bytes], _tone.sine_pcm)
dominant_frequency = cast(Callable[[bytes], tuple[int, float]], _tone.dominant_frequency)

SIP_TLS_PORT = 5061        # board/qemu-x86_64/device-config.json sip.port (signed into the bundle)
DOMAIN = "127.0.0.1"       # device-config sip.domain = Kamailio's db_text realm
PHONE_USER = "alice"
PEER_USER = "bob"
TONE_TO_PEER = 1000        # what the phone sends (call ... tone=1000)
PEER_TONE = 600            # what baresip plays back
TONE_TOLERANCE_HZ = 25     # the Goertzel grid is 25 Hz
CALL_PACKETS = 150         # 20 ms packets: ~3 s of media before hanging up
STEPS = 7


class StepFailed(RuntimeError):
    """A demo step did not reach its goal; the message says what was seen instead."""


@dataclass
class Results:
    build_s: float = 0.0
    prompt_s: float = 0.0
    verify_rc: int | None = None
    verify_line: str = ""
    registered_s: float = 0.0
    sealed_to: str = ""
    suite: str = ""
    security: str = ""
    setup_s: float = 0.0
    sent: int = 0
    heard_hz: int = 0
    heard_share: float = 0.0
    phone_heard_hz: Any = None
    qemu_rc: int | None = None
    stopped: list[str] = field(default_factory=list)


def say(text: str = "") -> None:
    print(text, flush=True)


def header(n: int, title: str) -> None:
    say()
    say(f"=== [{n}/{STEPS}] {title} " + "=" * max(3, 72 - len(title)))


class ConsoleEcho:
    """Prints the console's complete new lines (terminal escapes stripped) as they arrive; used as
    the boot progress callback, which the runner calls about once a second. The stage loader's
    PCR 14 lines are marked."""

    def __init__(self, con: Console) -> None:
        self.con = con
        self.pos = 0

    def __call__(self, elapsed: float = 0.0, last: str = "") -> None:
        self.flush(final=False)

    def flush(self, final: bool) -> None:
        new = self.con.text()[self.pos:]
        end = len(new) if final else new.rfind("\n") + 1
        if end <= 0:
            return
        self.pos += end
        for raw in new[:end].replace("\r", "\n").split("\n"):
            line = last_line(raw)
            if not line or line == "phone>":
                continue
            mark = ">>" if "PCR 14" in line else " |"
            say(f"  {mark} {line}")


def _call(st: dict[str, Any]) -> dict[str, Any]:
    c = st.get("call")
    return c if isinstance(c, dict) else {}


def wait_status(con: Console, cond: Callable[[dict[str, Any]], bool], what: str,
                timeout: float, every: float = 0.25) -> dict[str, Any]:
    try:
        return con.wait_status(cond, what, timeout, every)
    except ConsoleTimeout as e:
        raise StepFailed(str(e)) from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Demo:
    def __init__(self, args: argparse.Namespace, lab: Path) -> None:
        self.args = args
        self.lab = lab
        self.image_dir: Path = args.image_dir or REPO / "build" / args.board
        self.devices_dir: Path = args.devices_dir or REPO / "build" / "devices"
        self.keys: Path = args.keys or REPO / "build" / "keys"
        self.r = Results()
        self.step = 0
        self.title = ""
        self.t_prompt = 0.0
        self.qemu_pid = 0

    def begin(self, title: str) -> None:
        self.step += 1
        self.title = title
        header(self.step, title)

    # --- 1 ---------------------------------------------------------------------------------

    def build(self) -> None:
        self.begin("Build the image")
        cmd = [sys.executable, "-m", "host_tools.image", "--board", self.args.board,
               "--out", str(self.image_dir)]
        if self.args.keys:
            cmd += ["--keys", str(self.keys)]
        t0 = time.monotonic()
        if self.args.no_build:
            for f in ("disk.img", "reference.json"):
                if not (self.image_dir / f).is_file():
                    raise StepFailed(f"--no-build: {self.image_dir / f} is missing")
            say(f"reusing {self.image_dir} (--no-build)")
        else:
            say("$ " + " ".join(["python"] + cmd[1:]))
            rc = subprocess.run(cmd, cwd=REPO, check=False).returncode
            if rc != 0:
                raise StepFailed(f"the image build exited with status {rc}")
        self.r.build_s = time.monotonic() - t0

    # --- 2 ---------------------------------------------------------------------------------

    def provision(self) -> Device:
        self.begin(f"Provision device '{self.args.device}' (SIP account sealed to the TPM)")
        device = Device(self.args.device, DeviceConfig(
            board=self.args.board, build_dir=self.image_dir, devices_dir=self.devices_dir,
            network=True, forward_media=True))
        if device.dir.exists() and not self.args.keep:
            say(f"removing {device.dir} (a fresh TPM and flash; --keep keeps them)")
            shutil.rmtree(device.dir)
        secrets = self.lab / "secrets.json"
        secrets.write_text(json.dumps({"sip-account": {"username": PHONE_USER,
                                                       "password": USERS[PHONE_USER]}}))
        cmd = [sys.executable, "-m", "host_tools.provision", "--device", device.name,
               "--board", self.args.board, "--build-dir", str(self.image_dir),
               "--devices-dir", str(self.devices_dir), "--secrets", str(secrets)]
        say(f"$ python -m host_tools.provision --device {device.name} --secrets secrets.json"
            f"   # {{\"sip-account\": {{\"username\": \"{PHONE_USER}\", ...}}}}")
        try:
            rc = subprocess.run(cmd, cwd=REPO, check=False).returncode
        finally:
            secrets.unlink()   # the TPM holds the account now
        if rc != 0:
            raise StepFailed(f"provisioning exited with status {rc}")
        try:
            ref = json.loads((self.image_dir / "reference.json").read_text())
            self.r.sealed_to = ", ".join(str(p) for p in ref.get("pcr_policy", []))
        except (OSError, ValueError, AttributeError):
            self.r.sealed_to = "?"
        return device

    # --- 3 ---------------------------------------------------------------------------------

    def start_lab(self, stack: contextlib.ExitStack) -> tuple[Kamailio, Baresip]:
        self.begin("Start Kamailio (TLS 127.0.0.1:5061) and baresip (bob) on the host")
        if not HAVE_KAMAILIO or not HAVE_BARESIP:
            raise StepFailed("needs Debian kamailio, kamailio-tls-modules, openssl and "
                             "baresip-core: run `make deps`")
        if not IS_ROOT:
            raise StepFailed("Kamailio runs as root in the foreground in this set-up: run as root")
        ca_pem, ca_key = self.keys / "dev-ca.pem", self.keys / "dev-ca.key"
        bundle_ca = self.image_dir / "bundle" / "components" / "ca-bundle"
        if not ca_key.is_file() or not bundle_ca.is_file() or \
                bundle_ca.read_bytes() != ca_pem.read_bytes():
            raise StepFailed(f"the image's ca-bundle is not the development CA {ca_pem}: the "
                             "phone would not trust a certificate issued here")
        if not port_free(SIP_TLS_PORT):
            raise StepFailed(f"127.0.0.1:{SIP_TLS_PORT} is taken (another Kamailio or a test?); "
                             "the phone's signed device-config names this port")
        kdir = self.lab / "kamailio"
        kdir.mkdir()
        make_server_cert(kdir, ca_pem, ca_key)
        say(f"server certificate for IP:10.0.2.2, IP:127.0.0.1, DNS:localhost issued by {ca_pem}")
        kam = Kamailio(kdir, "MD5", tls_port=SIP_TLS_PORT)
        stack.callback(self._stopped, "kamailio", kam.pid, kam.stop)
        say(f"kamailio pid {kam.pid}: TLS ready on 127.0.0.1:{kam.tls_port} after "
            f"{kam.ready_ms:.0f} ms (db_text users alice, bob, carol; MD5 digest)")
        bob = Baresip(self.lab / "baresip", PEER_USER, USERS[PEER_USER], kam,
                      source_pcm=sine_pcm(PEER_TONE, 60000, amplitude=6000), record=True)
        stack.callback(self._stopped, "baresip", bob.pid, bob.stop)
        say(f"baresip pid {bob.pid}: registered as sip:{PEER_USER}@{DOMAIN} over TLS, answers "
            f"automatically, plays {PEER_TONE} Hz, records to {bob.dir}")
        say(f"lab directory: {self.lab}")
        return kam, bob

    def _stopped(self, what: str, pid: int, stop: Callable[[], None]) -> None:
        stop()
        self.r.stopped.append(f"{what} (pid {pid})")

    # --- 4 ---------------------------------------------------------------------------------

    def boot(self, run: Running) -> Console:
        self.begin("Boot the phone: QEMU (TCG) + OVMF + swtpm, user networking")
        con = run.console
        if con is None:
            raise StepFailed("the runner connected no console")
        self.qemu_pid = run.proc.pid
        say(f"qemu pid {run.proc.pid}, swtpm state {run.device.tpm_dir}; console:")
        echo = ConsoleEcho(con)
        try:
            run.wait_prompt(con, self.args.timeout, echo)
        finally:
            echo.flush(final=True)
        self.r.prompt_s = run.elapsed()
        self.t_prompt = time.monotonic()
        say(f"prompt after {self.r.prompt_s:.1f} s")
        port = run.forward_media(con)
        if port:
            say(f"media: host 127.0.0.1:{port}/{port + 1} (udp) forwarded to the phone")
        return con

    # --- 5 ---------------------------------------------------------------------------------

    def verify(self, device: Device, con: Console) -> None:
        self.begin("Verify the measured boot (event logs + PCRs vs reference.json)")
        ev = fetch_evidence(con, device.dir / "verify")
        say(f"fetched over the console: {ev.firmware_log.name} ({ev.firmware_log.stat().st_size} "
            f"bytes), {ev.phone_log.name} ({ev.phone_log.stat().st_size} bytes), "
            f"{ev.pcrs.name}, into {ev.firmware_log.parent}")
        cmd = verifier_command(ev, self.image_dir / "reference.json", [])
        say("$ python " + " ".join(cmd[1:]) + "   # PCR 10 (IMA) left out")
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        for line in (proc.stdout + proc.stderr).rstrip("\n").split("\n"):
            say("  " + line)
        self.r.verify_rc = proc.returncode
        self.r.verify_line = next((ln for ln in proc.stdout.split("\n") if ln.strip()), "")
        if proc.returncode != 0:
            raise StepFailed(f"the verifier exited with status {proc.returncode}")

    # --- 6 ---------------------------------------------------------------------------------

    def call(self, con: Console, kam: Kamailio, bob: Baresip) -> None:
        self.begin(f"Status, then a call to baresip with a {TONE_TO_PEER} Hz tone")
        st = wait_status(con, lambda s: s.get("registered") is True or s.get("unsealed") is False,
                         "registration", 60)
        self.r.registered_s = time.monotonic() - self.t_prompt
        shown = {k: st.get(k) for k in ("state", "image_version", "unsealed", "registered", "aor",
                                        "transport", "tls_verified", "registration_error",
                                        "media_address", "media_port")}
        say("phone> status   # (selected fields)")
        say("  " + json.dumps(shown))
        if st.get("unsealed") is not True:
            raise StepFailed(f"the TPM did not release the credentials: {json.dumps(st)}")
        if st.get("registered") is not True:
            raise StepFailed(f"the phone did not register: {st.get('registered_reason')}")
        say(f"unsealed: the TPM released the SIP account; registered as {st.get('aor')} over "
            f"TLS (certificate verified: {st.get('tls_verified')})")

        bob.clear_recordings()
        line = f"call sip:{PEER_USER}@{DOMAIN} tone={TONE_TO_PEER}"
        say(f"phone> {line}")
        t0 = time.monotonic()
        out = con.command(line).strip()
        say("  " + out)
        if not out.startswith("calling ") or "(call " not in out:
            raise StepFailed(f"the phone did not place the call: {out}")
        cid = out.split("(call ", 1)[1].rstrip(")")
        st = wait_status(con, lambda s: _call(s).get("state") == "connected"
                         or (s.get("call") is None and s.get("last_call") is not None),
                         "call connected", 30)
        c = _call(st)
        if c.get("state") != "connected":
            raise StepFailed(f"the call ended before it connected: {json.dumps(st.get('last_call'))}")
        self.r.setup_s = time.monotonic() - t0
        self.r.suite, self.r.security = str(c.get("suite")), str(c.get("security"))
        say(f"connected after {self.r.setup_s:.1f} s: peer {c.get('peer')}, codec {c.get('codec')},"
            f" SRTP suite {self.r.suite}, security \"{self.r.security}\""
            + (f" ({c.get('why')})" if c.get("why") else ""))
        if self.r.security != "locked":
            raise StepFailed(f"the call is not locked: {c.get('why')}")
        st = wait_status(con, lambda s: _call(s).get("media", {}).get("sent", 0) >= CALL_PACKETS,
                         "3 s of media", 30)
        c = _call(st)
        say("phone> status   # call")
        say("  " + json.dumps(c))
        self.r.sent = int(c.get("media", {}).get("sent", 0))
        self.r.phone_heard_hz = c.get("audio", {}).get("dominant_hz")
        out = con.command("hangup").strip()
        say("phone> hangup")
        say("  " + out)
        bob.wait_event("CALL_CLOSED", cid, lambda: time.sleep(0.05), timeout=15)
        say(f"baresip: call {cid} closed")
        wait_status(con, lambda s: s.get("call") is None, "call ended", 15)
        dec = bob.recordings().get("dec")
        if dec is None:
            raise StepFailed("baresip recorded nothing")
        pcm = read_wav(dec)
        f, share = dominant_frequency(pcm)
        self.r.heard_hz, self.r.heard_share = f, share
        say(f"baresip heard {f} Hz (share {share:.2f} of the power, Goertzel on a 25 Hz grid) in "
            f"{len(pcm) // 2 / 8000:.1f} s of decoded audio ({dec.name})")
        if abs(f - TONE_TO_PEER) > TONE_TOLERANCE_HZ or share <= 0.5:
            raise StepFailed(f"baresip did not hear the {TONE_TO_PEER} Hz tone: {f} Hz, "
                             f"share {share:.2f}")
        if "failed to decrypt" in bob.log_text():
            raise StepFailed("baresip failed to decrypt SRTP from the phone (see its log)")

    # --- 7 ---------------------------------------------------------------------------------

    def poweroff(self, run: Running, con: Console) -> None:
        self.begin("Power off")
        say("phone> poweroff")
        words = con.poweroff(30)
        for line in words.replace("\r", "\n").split("\n"):
            line = last_line(line)
            if line:
                say("  " + line)
        try:
            self.r.qemu_rc = run.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise StepFailed("QEMU did not exit within 30 s of poweroff") from None
        say(f"QEMU exited with status {self.r.qemu_rc}")

    def summary(self, total: float) -> str:
        r = self.r
        built = ("The built image was reused" if self.args.no_build
                 else f"The image was built in {r.build_s:.1f} s")
        return (f"{built} and device '{self.args.device}' "
                f"provisioned with a SIP account sealed to PCRs {r.sealed_to}; the phone "
                f"booted to its prompt in {r.prompt_s:.1f} s under TCG, measuring each bundle "
                f"component into PCR 14. The verifier replayed both event logs against the "
                f"TPM's PCRs and reference.json: \"{r.verify_line}\" (exit {r.verify_rc}). The "
                f"TPM released the account, the phone registered over verified TLS "
                f"{r.registered_s:.1f} s after the prompt, called baresip (set-up "
                f"{r.setup_s:.1f} s, {r.suite}, \"{r.security}\"), sent {r.sent} SRTP packets, "
                f"and baresip heard {r.heard_hz} Hz (share {r.heard_share:.2f}); the phone heard "
                f"{r.phone_heard_hz} Hz back. Powered off cleanly; {total:.0f} s in all.")


def run_demo(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    lab = Path(tempfile.mkdtemp(prefix="phone-demo-"))
    demo = Demo(args, lab)
    try:
        with contextlib.ExitStack() as stack:
            demo.build()
            device = demo.provision()
            kam, bob = demo.start_lab(stack)
            with device.running("tcp") as run:
                con = run.console
                try:
                    con = demo.boot(run)
                    demo.verify(device, con)
                    demo.call(con, kam, bob)
                    demo.poweroff(run, con)
                finally:
                    run.shutdown(con)   # a no-op after a clean power-off; else stop by PID
    except KeyboardInterrupt:
        say()
        say(f"demo: interrupted during step {demo.step} ({demo.title}); everything it started "
            "is stopped")
        shutil.rmtree(lab, ignore_errors=True)
        return 130
    except Exception as e:   # every failure ends the same way: named, cleaned up, exit 1
        kind = "" if isinstance(e, (StepFailed, DeviceError, ConsoleError, SipLabError)) \
            else type(e).__name__ + ": "
        say()
        say(f"demo: FAILED at step {demo.step}/{STEPS} ({demo.title}): {kind}{e}")
        if not any(lab.iterdir()):
            lab.rmdir()
        stopped = ([f"qemu (pid {demo.qemu_pid}) and its swtpm"] if demo.qemu_pid else []) \
            + demo.r.stopped
        kept = [str(p) for p in (lab, demo.devices_dir / args.device) if p.exists()]
        say(f"demo: stopped {', '.join(stopped) or 'nothing (none was started)'}"
            + (f"; logs kept in {' and '.join(kept)}" if kept else ""))
        return 1
    shutil.rmtree(lab, ignore_errors=True)
    say(f"stopped {', '.join(demo.r.stopped)}; lab directory removed")
    say()
    say("=== Summary " + "=" * 72)
    say(demo.summary(time.monotonic() - t_start))
    say()
    say("demo: OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host_tools.demo",
                                description="Build, provision, boot, verify and call: the "
                                            "product's main job in one command.")
    p.add_argument("--device", default="demo", metavar="NAME",
                   help="device name; its state lives in build/devices/NAME/ (default demo)")
    p.add_argument("--keep", action="store_true",
                   help="keep the device's TPM and flash instead of starting fresh")
    p.add_argument("--no-build", action="store_true",
                   help="reuse the built image (e.g. after `make image`)")
    p.add_argument("--board", default=BOARD)
    p.add_argument("--image-dir", type=Path, metavar="DIR", help="default build/<board>")
    p.add_argument("--devices-dir", type=Path, metavar="DIR", help="default build/devices")
    p.add_argument("--keys", type=Path, metavar="DIR",
                   help="development keys (dev-ca.pem/.key; default build/keys)")
    p.add_argument("--timeout", type=float, default=240.0,
                   help="seconds to wait for the console prompt (default 240)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
