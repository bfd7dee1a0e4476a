# The console's view of the real device: the state file the stage loader wrote, the TPM through
# the kernel's resource manager, the firmware's event log and the phone's own log. All paths come
# from the constructor so tests and other boards can point elsewhere.

import json
import os

FIRMWARE_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
RUN_DIR = "/run/phone"
TPM_DEVICE = "/dev/tpmrm0"
PHONE_PCR = 14


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class PhoneDevice:
    def __init__(self, run_dir=RUN_DIR, tpm_device=TPM_DEVICE, firmware_log=FIRMWARE_LOG):
        self.run_dir = run_dir
        self.tpm_device = tpm_device
        self.firmware_log_path = firmware_log
        self._tpm = None
        self._hook = None          # firmware.secrets.hook once credentials were asked for
        self._hook_error = None    # why they could not be asked for

    def _state(self):
        try:
            return json.loads(_read(self.run_dir + "/state.json"))
        except (OSError, ValueError) as e:
            return {"state": "unknown", "reason": "no stage-loader state: %s" % e}

    def tpm(self):
        if self._tpm is None:
            from firmware.tpm.client import Tpm
            from firmware.tpm.transport import open_uri
            self._tpm = Tpm(open_uri(self.tpm_device))
        return self._tpm

    def release_credentials(self):
        """Once at start: ask the TPM to unseal the phone's credentials (firmware.secrets.hook).
        Only for a bundle the stage loader verified: a refused bundle never gets to try."""
        st = self._state()
        if st.get("state") != "running":
            self._hook_error = "the stage loader refused the bundle: credentials stay sealed"
            return
        try:
            from firmware.secrets import hook
        except ImportError as e:
            self._hook_error = "no credential store support in this image: %s" % e
            return
        try:
            hook.release_at_boot(self.tpm(), run_dir=self.run_dir)
            self._hook = hook
        except Exception as e:  # the release reports TPM refusals itself; this is a crash
            self._hook_error = "credential release failed: %s: %s" % (e.__class__.__name__, e)

    def status(self):
        st = self._state()
        out = {
            "state": st.get("state", "unknown"),
            "image_version": st.get("bundle_version"),
            "components": st.get("components", []),
        }
        if st.get("reason"):
            out["reason"] = st["reason"]
        getuid = getattr(os, "getuid", None)
        if getuid is not None:
            out["uid"] = getuid()  # the stage loader drops root before starting the phone
        try:
            out["pcr14"] = self.tpm().pcr_read_all("sha256", [PHONE_PCR])[PHONE_PCR].hex()
        except Exception as e:
            out["pcr14"] = None
            out["pcr14_error"] = str(e)
        out["unsealed"] = False
        if self._hook is not None:
            self._hook.merge_status(out)
        else:
            out["unsealed_reason"] = self._hook_error or "credentials not released yet"
        # SIP registration is not wired to this console yet; say so rather than guess.
        out["registered"] = False
        out["registered_reason"] = "the SIP user agent is not started by this console"
        return out

    def pcrs(self, bank):
        return self.tpm().pcr_read_all(bank)

    def firmware_log(self):
        # securityfs gives the file mode 0440 root: the unprivileged phone reads the copy the
        # stage loader made at boot (the firmware log does not change after ExitBootServices).
        try:
            return _read(self.firmware_log_path)
        except OSError:
            return _read(self.run_dir + "/logs/firmware.bin")

    def phone_log(self):
        return _read(self.run_dir + "/logs/phone.bin")

    def shutdown_tpm(self):
        if self._hook is not None:
            self._hook.forget()  # wipe released secrets before the power goes
        self.tpm().shutdown(clear=True)
