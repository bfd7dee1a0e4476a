# The phone console's process: forked from the stage loader (before measuring, or again on a
# restart), dropped to the phone user, given its code directory, the console's environment and
# its end of the TPM broker's socket (BROKER_FD), and nothing else.

import os
import sys

from firmware.boot.log import say

RUN_DIR = "/run/phone"
TPM_DEVICE = "/dev/tpmrm0"
INITRAMFS_CODE = "/opt/phone"
PHONE_UID = 1000  # dedicated unprivileged user and group of the phone application
PHONE_GID = 1000
# The phone's end of the TPM broker's socketpair (broker_io.py), set by the loader before the
# console is forked; every console child keeps it open (PHONE_BROKER_FD in its environment).
BROKER_FD = None


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
