# python3 -m firmware.boot: the stage loader's I/O, run by the initramfs /init as PID 1 (CPython).
#
#   firmware partition --read--> stage.measure_and_verify --extend--> /dev/tpmrm0 (PCR 14)
#                                        |
#            /run/phone (tmpfs): logs/phone.bin, logs/firmware.bin, state.json, app/, etc/
#                                        |
#   verified: start the phone application from the bundle (firmware.console from the bundle's code,
#             in a forked child of this process) as uid/gid PHONE_UID, no supplementary groups;
#   refused:  start the console from the initramfs' own code instead (measured in PCR 9/11), which
#             reports the refusal and serves the logs, so the host can still verify the device.
#
# As PID 1 this process must never exit (the kernel would panic): it supervises the console and
# powers the machine off when the console asks (exit status 80) or keeps failing.

import json
import os
import subprocess
import sys
import time

from firmware.boot import antirollback, broker, broker_io, stage, tpm_guard, ustar  # noqa: F401
from firmware.boot.restarts import RestartBudget
from firmware.boot.signature import load_public_key

RUN_DIR = "/run/phone"
TPM_DEVICE = "/dev/tpmrm0"
FIRMWARE_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
# Where the image puts the vendor's Ed25519 public key (inside the initramfs, so it is covered by
# the PCR 9/11 measurement of the initrd; never on the firmware partition an attacker can write).
VENDOR_KEY_PATHS = ("/opt/phone/vendor-pubkey.pem", "/etc/phone/vendor-pubkey.pem")
INITRAMFS_CODE = "/opt/phone"
# The board this initramfs was built for (host_tools/image/build.py writes it; covered by PCR 9/11
# like the vendor key). A bundle signed for another board is refused. Absent: not checked.
BOARD_PATH = "/opt/phone/board"
FW_PARTITION = "phone-fw"  # GPT partition name of the firmware partition (docs/image-format.md)
PHONE_UID = 1000  # dedicated unprivileged user and group of the phone application
PHONE_GID = 1000
EXIT_POWEROFF = 80  # firmware.console.loop.EXIT_POWEROFF: the console asks for power-off
MAX_RESTARTS = 5  # console restarts allowed ...
RESTART_WINDOW_S = 60.0  # ... within any this many seconds (firmware/boot/restarts.py)
CODE_COMPONENTS = ("phone-app", "sip-media")  # ustar archives of firmware/ code
SUPPORTED_BANKS = ("sha1", "sha256", "sha384", "sha512")
T0 = time.monotonic()


def say(msg):
    sys.stdout.write("boot: [%5.1f s] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, mode=0o444):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise OSError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                               p.stdout.decode(errors="replace").strip()))


def find_partition(name, sys_block="/sys/class/block"):
    """/dev/<node> of the partition whose GPT partition name is `name` (the kernel exports it
    as PARTNAME in the block device's uevent), or None."""
    try:
        nodes = sorted(os.listdir(sys_block))
    except OSError:
        return None
    for node in nodes:
        try:
            lines = read_file("%s/%s/uevent" % (sys_block, node)).decode().splitlines()
        except OSError:
            continue
        if "PARTNAME=" + name in lines:
            for line in lines:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line[len("DEVNAME="):]
    return None


def read_partition():
    # /init exports PHONE_FW_DEV; look the partition up ourselves when started another way.
    dev = os.environ.get("PHONE_FW_DEV", "")
    if not dev or dev.endswith("/missing"):
        dev = find_partition(FW_PARTITION)
    if not dev:
        raise OSError("no firmware partition (GPT name %s) found" % FW_PARTITION)
    return read_file(dev)


def vendor_key():
    for path in VENDOR_KEY_PATHS:
        if os.path.exists(path):
            return path, load_public_key(read_file(path))
    return None, None


def board_name():
    try:
        name = read_file(BOARD_PATH).decode("utf-8").strip()
    except (OSError, UnicodeError):
        return None
    return name or None


def open_tpm(timeout=5.0):
    from firmware.tpm.client import Tpm
    from firmware.tpm.transport_dev import DeviceTransport
    deadline = time.monotonic() + timeout
    while not os.path.exists(TPM_DEVICE):
        if time.monotonic() > deadline:
            raise OSError("%s did not appear" % TPM_DEVICE)
        time.sleep(0.05)
    return Tpm(DeviceTransport(TPM_DEVICE))


def safe_member_path(name):
    parts = name.split("/")
    if not name.startswith("firmware/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError("unsafe path %r in code component" % name)
    return name


def install(outcome, root, cache_tag=None):
    """Write the verified components under root: code archives into app/, others into etc/.
    Code goes in sourceless: each `pkg/__pycache__/mod.<cache_tag>.pyc` of the archive is written
    as `pkg/mod.pyc` and its `pkg/mod.py` is left out (the sources stay in the measured component
    on the flash; console tracebacks then show file and line, not the code line). Half the files:
    this runs between the separator and the unseal, where every system call costs under TCG. A
    source whose byte code is for another interpreter (or missing) is installed as it is. One
    open() per file with its final mode and each directory made once."""
    if cache_tag is None:
        cache_tag = getattr(getattr(sys, "implementation", None), "cache_tag", None)
    suffix = ".%s.pyc" % cache_tag if cache_tag else None
    app, etc = root + "/app", root + "/etc"
    made = {}
    for name, data in outcome.components:
        if name in CODE_COMPONENTS:
            members = [(safe_member_path(m), body) for m, body in ustar.parse(data)]
            compiled = {}
            for rel, body in members:
                d, _, base = rel.rpartition("/")
                if suffix and d.endswith("/__pycache__") and base.endswith(suffix):
                    compiled[d[:-len("/__pycache__")] + "/" + base[:-len(suffix)] + ".py"] = body
            for rel, body in members:
                if "/__pycache__/" in rel:
                    continue
                if rel in compiled:
                    rel, body = rel[:-3] + ".pyc", compiled[rel]
                d = app + "/" + rel.rpartition("/")[0]
                if d not in made:
                    os.makedirs(d, mode=0o755, exist_ok=True)
                    made[d] = True
                create_file(app + "/" + rel, body)
        else:
            if etc not in made:
                os.makedirs(etc, mode=0o755, exist_ok=True)
                made[etc] = True
            create_file(etc + "/" + name, data)


def create_file(path, data, mode=0o444):
    # O_EXCL: a member name repeated in an archive is refused rather than silently overwritten
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view, off = data, 0
        while off < len(view):
            off += os.write(fd, view[off:])
    finally:
        os.close(fd)


def measure(tpm):
    """Measure and verify the bundle; returns the Outcome (state refused on any failure)."""
    try:
        image = read_partition()
    except OSError as e:
        say("cannot read the firmware partition: %s" % e)
        image = b""
    try:
        key_path, verify = vendor_key()
    except Exception as e:  # noqa: BLE001  any key problem: fail closed, still measure
        say("vendor key unusable: %s: %s" % (e.__class__.__name__, e))
        key_path, verify = None, None
    if verify is None:
        say("no usable vendor public key: every bundle counts as unsigned")
    active = tpm.pcr_banks()
    banks = tuple(b for b in SUPPORTED_BANKS if b in active) or ("sha256",)

    stamps = []
    from firmware.eventlog.writer import separator_event
    pcr14 = tpm_guard.Pcr14(tpm, stage.PHONE_PCR, separator_event(banks, stage.PHONE_PCR)[0])

    def extend(pcr, digests):
        pcr14.extend(pcr, digests)
        stamps.append(uptime())  # the last one is the separator's

    board = board_name()
    if board is None:
        say("no board name in this initramfs (%s): the bundle's board is not checked" % BOARD_PATH)
    # Reading the floor extends nothing; a failure is handed to the decision (refusal after
    # measuring), so the measurement-first rule holds whatever the NV index says.
    floor, floor_error = antirollback.read_floor(tpm)
    if floor_error is None:
        say("anti-rollback floor %d (NV index 0x%08x)" % (floor, antirollback.FLOOR_INDEX))
    # Half measured: PCR 14 is closed before anything else can reach the TPM (tpm_guard.py);
    # if even that fails, TpmLockdownError: main powers off rather than start anything.
    try:
        outcome = tpm_guard.measure_closed(pcr14, lambda: stage.measure_and_verify(
            image, extend, verify, banks=banks, board=board, min_counter=floor,
            floor_error=floor_error), note=say)
    except tpm_guard.Pcr14OpenError as e:
        raise TpmLockdownError(str(e))
    finally:
        lock_platform(tpm)  # on every path that goes on to start a console
    outcome.anti_rollback_floor = floor if floor_error is None else None
    # firmware.secrets reports separator -> release time from this (taken right after the
    # separator's extend, so the signature check and the install count in that time)
    outcome.separator_uptime_s = stamps[-1] if stamps else uptime()
    b_board, b_version, b_counter, b_digests = outcome.bundle
    say("measured bundle %s (board %s, anti-rollback counter %d) into PCR %d: sha256 %s" % (
        b_version, b_board, b_counter, outcome.log.pcr, b_digests.get("sha256", b"").hex()))
    for name, version, digests in outcome.measured:
        say("measured %s %s into PCR %d: sha256 %s" % (name, version, outcome.log.pcr,
                                                         digests.get("sha256", b"").hex()))
    say("PCR %d closed with a separator (%s); nothing more is measured"
        % (outcome.log.pcr, "+".join(banks)))
    return outcome


class TpmLockdownError(RuntimeError):
    """PCR 14 could not be closed after a failed measurement, or the platform hierarchy could
    not be checked and disabled: nothing may start (the loader powers off)."""


def lock_platform(tpm):
    """Take the platform hierarchy away from everything after the loader (tpm_guard.py); the
    outcome is the finding this boot reports: what the firmware left."""
    try:
        outcome, flags = tpm_guard.lock_platform(tpm)
    except Exception as e:  # noqa: BLE001  a TpmError names the code
        raise TpmLockdownError("platform hierarchy not locked: %s: %s" % (e.__class__.__name__, e))
    say("platform hierarchy: %s (phEnable %s, phEnableNV %s)" % (
        {tpm_guard.PLATFORM_DISABLED: "firmware left platformAuth empty: disabled until the next boot",
         tpm_guard.PLATFORM_ALREADY_OFF: "already disabled by the firmware",
         tpm_guard.PLATFORM_AUTH_SET: "platformAuth set by the firmware (unknown here): left enabled"}[outcome],
        flags["phEnable"], flags["phEnableNV"]))
    return outcome


def prepare_run_dir():
    os.makedirs(RUN_DIR, exist_ok=True)
    try:
        run(["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", RUN_DIR])
    except OSError as e:
        say("tmpfs on %s: %s (using the initramfs)" % (RUN_DIR, e))
    os.makedirs(RUN_DIR + "/logs", mode=0o755, exist_ok=True)


def save_logs(outcome):
    if outcome is not None and outcome.log is not None:
        write_file(RUN_DIR + "/logs/phone.bin", outcome.log.to_bytes())
    try:
        write_file(RUN_DIR + "/logs/firmware.bin", read_file(FIRMWARE_LOG))
    except OSError as e:
        say("firmware event log unavailable: %s" % e)


def uptime():
    try:
        return float(read_file("/proc/uptime").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def copy_sealed_store():
    # The phone user may not read the raw data partition; the sealed store holds no secret in
    # the clear (TPM-sealed blobs and metadata), so root copies it to the tmpfs for the phone.
    dev = os.environ.get("PHONE_DATA_DEV", "")
    if not dev or dev.endswith("/missing"):
        return
    try:
        from firmware.secrets import hook
        n = hook.copy_store(dev, RUN_DIR)
        say("sealed store copied from %s (%d bytes)" % (dev, n))
    except Exception as e:  # a blank or foreign partition: the phone reports no credentials
        say("no sealed store on %s: %s" % (dev, e))


def save_state(outcome, state, reason):
    st = outcome.to_json() if outcome is not None else {"components": []}
    if outcome is not None and getattr(outcome, "separator_uptime_s", None) is not None:
        st["separator_uptime_s"] = outcome.separator_uptime_s
    if outcome is not None and getattr(outcome, "installed_uptime_s", None) is not None:
        st["installed_uptime_s"] = outcome.installed_uptime_s
    if outcome is not None and hasattr(outcome, "anti_rollback_floor"):
        st["anti_rollback_floor"] = outcome.anti_rollback_floor
    st["bundle_state"] = st.get("state")
    st["state"] = state
    st["reason"] = reason
    write_file(RUN_DIR + "/state.json", json.dumps(st, sort_keys=True).encode())


# The phone never opens the TPM (issue 9 part 2): /dev/tpm0 and /dev/tpmrm0 stay root's (0600),
# and a root child of this process, the broker (broker.py, broker_io.py), holds the TPM and
# serves the phone's few requests over a socketpair. BROKER_FD is the phone's end, inherited by
# every console child (and kept open here for restarts).
BROKER_FD = None


def start_broker(tpm, broker_end, verified, reason):
    """Fork the broker (root); it unseals the boot credentials at once when the bundle was
    verified, then serves. This process closes its broker end and its TPM file descriptor, so
    the broker is the only holder of the TPM. -> the broker's pid."""
    from firmware.boot import broker, broker_io
    try:
        from firmware.secrets import hook
    except ImportError:
        hook = None
    pid = _fork()
    if pid == 0:
        code = 0
        try:
            # keep only the TPM and this end: the console's go pipe and end must see EOF
            keep = [broker_end.fileno()]
            f = getattr(getattr(tpm, "transport", None), "_f", None)
            if f is not None:
                keep.append(f.fileno())
            low = 3
            for fd in sorted(keep):
                os.closerange(low, fd)
                low = fd + 1
            os.closerange(low, MAX_FD)
            ops = broker_io.TpmOps(tpm, RUN_DIR, hook)
            if tpm is not None:
                ops.release(verified, reason)
            broker_io.serve(broker_end, broker.Broker(ops), say)
        except BaseException as e:  # noqa: BLE001  reported; the phone then sees a closed channel
            say("broker: %s: %s" % (e.__class__.__name__, e))
            code = 1
        finally:
            os._exit(code)
    broker_end.close()
    if tpm is not None:
        try:
            tpm.transport.close()
        except Exception:  # noqa: BLE001
            pass
    return pid


def console_env(pythonpath):
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
           "HOME": "/tmp", "PHONE_RUN_DIR": RUN_DIR, "PHONE_TPM": TPM_DEVICE,
           "LANG": "C.UTF-8"}
    if BROKER_FD is not None:
        env["PHONE_BROKER_FD"] = str(BROKER_FD)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env


# The console runs in a child of this process (os.fork), not in a second interpreter: the child
# keeps the standard library and `cryptography` modules (and OpenSSL's fetched algorithms) that
# warm() loaded here before anything was measured, drops to the phone user, forgets every
# `firmware` module this loader imported from the initramfs and imports firmware.console afresh
# from the code directory it is given. Only that directory's code (the verified bundle, or the
# initramfs' own code for the recovery console) runs as the phone. A second interpreter start-up
# cost ~0.5 s under TCG before the prompt; a fork costs a few milliseconds.
WARM_MODULES = (
    "json", "select", "struct", "binascii", "errno", "hashlib", "hmac", "socket", "runpy",
    "cryptography.exceptions", "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.ciphers", "cryptography.hazmat.primitives.ciphers.aead",
)
MAX_FD = 65536
_LOADER_MODULES = []  # the console child's references to the loader's firmware modules


def warm():
    """Import what the console and the unseal need (from the initramfs, which PCR 9/11 cover: no
    bundle code runs) and run one throwaway P-256 ECDH and AES key set-up: OpenSSL 3 fetches its
    algorithm implementations on first use (~0.3 s under TCG), which would otherwise land in the
    salted session's start, between the separator and the unseal."""
    for name in WARM_MODULES:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001  a missing module only costs time later
            pass
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        k = ec.generate_private_key(ec.SECP256R1())
        k.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())
        k.public_key().public_numbers()
        Cipher(algorithms.AES(bytes(16)), modes.ECB()).encryptor().update(bytes(16))
        AESGCM(bytes(16))
    except Exception:  # noqa: BLE001  no cryptography: the pure engines are used
        pass


def drop_privileges():
    """uid/gid PHONE_UID/PHONE_GID, no supplementary groups; raises unless root is gone for good."""
    if os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(PHONE_GID)
    os.setuid(PHONE_UID)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (PHONE_UID,) * 2 + (PHONE_GID,) * 2:
        raise OSError("still privileged after setuid/setgid")
    try:
        os.setuid(0)
    except OSError:
        return
    raise OSError("could regain root after dropping privileges")


def run_console_child(pythonpath, go_fd=None):
    """In the forked child: become the phone and run firmware.console from `pythonpath`. With
    `go_fd` the child forks before the measurement (prefork_console): it drops its privileges at
    once and reads the code directory from that pipe once the loader has verified the bundle
    (EOF: exit unused). Never returns; the exit status is the console's (EXIT_POWEROFF asks for
    power-off)."""
    code = 1
    try:
        drop_privileges()
        os.chdir("/")
        # the TPM and partition descriptors stay with the loader; the broker's phone end and
        # the go pipe are all the console keeps
        keep = sorted(fd for fd in (go_fd, BROKER_FD) if fd is not None)
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, MAX_FD)
        if go_fd is not None:
            chunks = []
            while True:
                chunk = os.read(go_fd, 4096)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(go_fd)
            pythonpath = b"".join(chunks).decode()
            if not pythonpath:
                code = 0
                return
        os.environ.clear()
        os.environ.update(console_env(pythonpath))
        # Out of sys.modules, so the console imports its own; still referenced, so nothing is
        # deallocated here: freeing them would write to (and copy) the pages shared with PID 1.
        global _LOADER_MODULES
        _LOADER_MODULES = [sys.modules.pop(name) for name in list(sys.modules)
                           if name == "firmware" or name.startswith("firmware.")]
        sys.path[:] = [pythonpath] + [p for p in sys.path
                                      if p not in ("", "/", INITRAMFS_CODE, pythonpath)]
        import importlib
        importlib.invalidate_caches()
        import runpy
        runpy.run_module("firmware.console", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # noqa: BLE001  reported; the loader restarts the console
        try:
            sys.stderr.write("console: %s: %s\n" % (e.__class__.__name__, e))
        except Exception:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fork():
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything allocated so far moves to the collector's permanent generation: the child's
    # collections then never walk (and copy-on-write) the pages it shares with this process.
    import gc
    gc.freeze()
    return os.fork()


def start_console(pythonpath):
    """Fork the console (see run_console_child); -> its pid."""
    pid = _fork()
    if pid == 0:
        run_console_child(pythonpath)
    return pid


class Preforked:
    """The console's process, forked (and unprivileged) before the measurement, waiting for its
    code directory: the fork and the privilege drop are then not between the separator and the
    unseal. go(path) -> pid; cancel() lets it exit unused."""

    def __init__(self):
        r, self.w = os.pipe()
        try:
            self.pid = _fork()
        except BaseException:
            os.close(r)
            os.close(self.w)
            raise
        if self.pid == 0:
            os.close(self.w)
            run_console_child(None, go_fd=r)
        os.close(r)

    def go(self, pythonpath):
        data = pythonpath.encode()
        try:
            while data:
                data = data[os.write(self.w, data):]
        finally:
            os.close(self.w)
        return self.pid

    def cancel(self):
        try:
            os.close(self.w)
        except OSError:
            pass


def prefork_console():
    try:
        return Preforked()
    except Exception as e:  # noqa: BLE001  the console is then forked when it is needed
        say("cannot fork the console ahead: %s" % e)
        return None


def wait_console(pid):
    """Wait for the console to exit, reaping any orphan on the way (PID 1's duty); -> its exit
    status (negative: killed by that signal)."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return -1
        except InterruptedError:
            continue
        if got == pid:
            return os.waitstatus_to_exitcode(status)


def power_off():
    say("powering off")
    try:
        os.sync()
    except AttributeError:
        pass
    if os.getpid() != 1:
        sys.exit(0)
    while True:  # PID 1 must not return
        subprocess.run(["poweroff", "-f"])
        time.sleep(1)


def main():
    global BROKER_FD
    say("stage loader started (pid %d)" % os.getpid())
    prepare_run_dir()
    warm()
    from firmware.boot import broker_io
    broker_end, phone_end = broker_io.channel()
    BROKER_FD = phone_end.fileno()
    preforked = prefork_console()
    tpm = None
    outcome = None
    state, reason = "refused", None
    try:
        # copy_sealed_store's module, imported now (initramfs code, nothing from the bundle) so
        # the import is not on the separator -> unseal path
        from firmware.secrets import hook  # noqa: F401
    except ImportError:
        pass
    try:
        tpm = open_tpm()
        outcome = measure(tpm)
        reason = outcome.reason
        if outcome.state == stage.STATE_VERIFIED:
            install(outcome, RUN_DIR)
            outcome.installed_uptime_s = uptime()
            state = "running"
            say("bundle %s verified (anti-rollback counter %d)" % (
                outcome.manifest["bundle_version"], outcome.manifest["anti_rollback_counter"]))
    except TpmLockdownError as e:
        say("REFUSED: %s" % e)
        if preforked is not None:
            preforked.cancel()
        power_off()
    except Exception as e:  # TPM or storage failure: fail closed, keep a console for diagnosis
        reason = "stage loader failed: %s: %s" % (e.__class__.__name__, e)
    if state != "running":
        say("REFUSED: %s" % reason)
    save_logs(outcome)
    save_state(outcome, state, reason)
    if state == "running":
        copy_sealed_store()
    start_broker(tpm, broker_end, state == "running", reason)
    if state == "running":
        pythonpath = RUN_DIR + "/app"
    elif os.path.exists(INITRAMFS_CODE + "/firmware/console/__init__.py"):
        pythonpath = INITRAMFS_CODE
        say("starting the recovery console from the initramfs")
    else:
        say("no recovery console in this image")
        if preforked is not None:
            preforked.cancel()
        power_off()
    say("starting the phone console as uid %d" % PHONE_UID)
    budget = RestartBudget(MAX_RESTARTS, RESTART_WINDOW_S)
    while True:
        if preforked is not None:
            pid, preforked = preforked.go(pythonpath), None
        else:
            pid = start_console(pythonpath)
        rc = wait_console(pid)
        if rc == EXIT_POWEROFF:
            power_off()
        say("console exited with status %s" % rc)
        if not budget.allow(time.monotonic()):
            say("console keeps failing: %d restarts within %d s" % (MAX_RESTARTS, RESTART_WINDOW_S))
            power_off()
        time.sleep(0.5)


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:  # never let PID 1 die with a traceback: the kernel would panic
        say("fatal: %s: %s" % (e.__class__.__name__, e))
        power_off()
