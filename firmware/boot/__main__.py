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

from firmware.boot import (antirollback, broker, broker_io, console_proc, stage,  # noqa: F401
                           tpm_guard, uki_report)
# the loader's steps live in modules with one job each; the names below are what main uses (and
# what tests/unit/firmware/test_boot_main.py reaches through this module)
from firmware.boot.console_proc import (  # noqa: F401
    INITRAMFS_CODE,
    MAX_FD,
    PHONE_GID,
    PHONE_UID,
    Preforked,
    _fork,
    prefork_console,
    start_console,
    wait_console,
    warm,
)
from firmware.boot.install import CODE_COMPONENTS, install, safe_member_path  # noqa: F401
from firmware.boot.log import say
from firmware.boot.partitions import (  # noqa: F401
    BOARD_PATH,
    board_name,
    component_pcr,
    find_partition,
    read_file,
    read_partition,
    run,
    uptime,
    vendor_key,
    write_file,
)
from firmware.boot.restarts import RestartBudget

RUN_DIR = "/run/phone"
TPM_DEVICE = "/dev/tpmrm0"
FIRMWARE_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
EXIT_POWEROFF = 80  # firmware.console.loop.EXIT_POWEROFF: the console asks for power-off
EXIT_REBOOT = 81  # firmware.console.loop.EXIT_REBOOT: SMP OS reset (TPM2_Shutdown already sent)
STAGING_DIR = RUN_DIR + "/upload"  # the phone's (uid PHONE_UID) upload staging, on the tmpfs
MAX_RESTARTS = 5  # console restarts allowed ...
RESTART_WINDOW_S = 60.0  # ... within any this many seconds (firmware/boot/restarts.py)
SUPPORTED_BANKS = ("sha1", "sha256", "sha384", "sha512")


def open_tpm(timeout=5.0):
    from firmware.tpm.client import Tpm
    from firmware.tpm.transport_dev import DeviceTransport
    deadline = time.monotonic() + timeout
    while not os.path.exists(TPM_DEVICE):
        if time.monotonic() > deadline:
            raise OSError("%s did not appear" % TPM_DEVICE)
        time.sleep(0.05)
    return Tpm(DeviceTransport(TPM_DEVICE))


def measure(tpm, bank="a"):
    """Measure and verify the bundle in firmware bank `bank`; returns the Outcome (state refused
    on any failure)."""
    try:
        image = read_partition(bank)
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
    # the board's component register (firmware/pcr_registry.py); an unusable setting measures into
    # the default register and refuses the bundle
    pcr, pcr_error = component_pcr()
    if pcr_error is not None:
        say("component register setting refused: %s; measuring into PCR %d, refusing the bundle"
            % (pcr_error, pcr))
    pcr14 = tpm_guard.Pcr14(tpm, pcr, separator_event(banks, pcr)[0])

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
            floor_error=floor_error, pcr=pcr, pcr_error=pcr_error), note=say)
    except tpm_guard.Pcr14OpenError as e:
        raise TpmLockdownError(str(e))
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


def choose_bank(tpm):
    """The firmware bank to boot (slot_boot.py), decided and recorded before anything is measured;
    -> (bank, SlotOps or None). No banks or record: bank a, as before there were two."""
    from firmware.boot import broker_slots, slot_boot
    from firmware.boot.partitions import DATA_PARTITION, bank_devices, partition_device
    from firmware.update.partition_flash import PartitionFlash
    devs = bank_devices()
    data = partition_device(*DATA_PARTITION)
    if sorted(devs) != ["a", "b"] or data is None:
        say("firmware banks: %s, data partition %s: booting bank a without a slot record"
            % (",".join(sorted(devs)) or "none", data or "missing"))
        return "a", None
    from firmware.boot import uki_env
    env, uki_running = uki_env.detect(say)  # the UKI bank the firmware booted (BootCurrent)
    try:
        flash = PartitionFlash(devs, data)
        bank, slots, note = slot_boot.choose_bank(flash, say, uki_running)
    except OSError as e:
        say("slot record unavailable (%s): booting bank a" % e)
        return "a", None
    say("firmware bank %s (%s)%s" % (bank, devs[bank], ": " + note if note else ""))
    try:
        _, verify = vendor_key()
    except Exception:  # noqa: BLE001  no key: every upload is refused as unsigned
        verify = None
    staged = STAGING_DIR + "/staged.bundle"
    uki = None
    if env is not None:
        from firmware.boot.broker_uki import UkiOps
        from firmware.update.uki_slots import UkiSlots
        uki = UkiOps(UkiSlots(slots), env, verify, board_name(), staged, say)
    ops = broker_slots.SlotOps(slots, verify, board_name(), component_pcr()[0], tpm, staged,
                               log=say, uki=uki)
    return bank, ops


def prepare_staging():
    """The directory the phone receives an upload into (its own, on the tmpfs): the broker
    re-checks whatever it finds there before it installs it."""
    try:
        os.makedirs(STAGING_DIR, mode=0o700, exist_ok=True)
        os.chown(STAGING_DIR, PHONE_UID, PHONE_GID)
    except OSError as e:
        say("upload staging directory: %s" % e)


def _halt(word, command):
    """Sync and end the machine with `command` (reboot or poweroff, forced: PID 1's children
    are already stopped); a PID other than 1 (tests) just exits."""
    say(word)
    try:
        os.sync()
    except AttributeError:
        pass
    if os.getpid() != 1:
        sys.exit(0)
    while True:  # PID 1 must not return
        subprocess.run([command, "-f"])
        time.sleep(1)


def reboot():
    _halt("rebooting", "reboot")


def save_state(outcome, state, reason, updates=None):
    st = outcome.to_json() if outcome is not None else {"components": []}
    if updates is not None:
        from firmware.boot import slot_boot
        st["slot"] = slot_boot.summary(updates.slots.rec)
    st["uki"] = uki_report.boot_report()  # the UKI bank this boot came from (issue 11)
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


def power_off():
    _halt("powering off", "poweroff")


def replace_broker(pid):
    """Kill the broker `pid` and give the phone's end a new peer; -> the new broker end."""
    import signal
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    broker_end, phone_end = broker_io.channel()
    os.dup2(phone_end.fileno(), console_proc.BROKER_FD)  # the consoles' descriptor number stays
    phone_end.close()
    return broker_end


def main():
    say("stage loader started (pid %d)" % os.getpid())
    prepare_run_dir()
    warm()
    broker_end, phone_end = broker_io.channel()
    console_proc.BROKER_FD = phone_end.fileno()
    preforked = prefork_console()
    tpm = None
    outcome = None
    state, reason = "refused", None
    try:
        # the broker's release module, imported now (initramfs code, nothing from the bundle)
        # so the import is not on the separator -> unseal path
        from firmware.secrets import hook  # noqa: F401
    except ImportError:
        pass
    broker_pid = None
    updates = None
    try:
        tpm = open_tpm()
        # before measuring: on every path, and not between the separator and the unseal
        lock_platform(tpm)
        # the bank is chosen (and a trial recorded) before anything is measured
        bank, updates = choose_bank(tpm)
        prepare_staging()
        uki_report.boot_report()  # read now: state.json is written between separator and unseal
        outcome = measure(tpm, bank)
        reason = outcome.reason
        if outcome.state == stage.STATE_VERIFIED:
            # The broker unseals while this process installs: the separator -> unsealed path
            # is the broker's alone. state.json first (the release reads the measured
            # components and the separator's time from it); the broker reads the sealed store
            # from the data partition itself (root).
            save_state(outcome, "running", reason, updates)
            broker_pid = broker_io.start_broker(tpm, broker_end, True, reason, RUN_DIR, _fork,
                                                MAX_FD, say, updates)
            tpm = broker_end = None  # the broker's now
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
        if broker_pid is not None:
            # verified but not installed: the broker that unsealed must go; a new one serves
            # the recovery console without credentials
            broker_end = replace_broker(broker_pid)
            broker_pid = None
            try:
                tpm = open_tpm()
            except Exception as e:  # noqa: BLE001  the recovery console then reports the TPM
                say("TPM unavailable: %s" % e)
    save_logs(outcome)
    save_state(outcome, state, reason, updates)
    if broker_pid is None:
        # the recovery console keeps the slot operations: a refused trial bank can be replaced
        broker_io.start_broker(tpm, broker_end, False, reason, RUN_DIR, _fork, MAX_FD, say, updates)
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
        if rc == EXIT_REBOOT:
            reboot()
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
