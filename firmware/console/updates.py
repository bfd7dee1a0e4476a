# Firmware updates on the phone: the SMP server (firmware/smp) on the console's serial line, its
# slot backend the stage loader's root broker (firmware/update/brokered.py), and the phone's own
# confirmation of a trial image (MCUboot design: the application confirms the image it runs once
# it works; unconfirmed, the next boot reverts). "Works" here is ready: the console is up, the
# TPM released the credentials, and the phone registered if it has a SIP account.
#
# An upload is checked here as it arrives (signature, board, anti-rollback floor before a byte is
# staged; every component and the announced SHA-256 after) and again by the broker before it
# touches a bank (firmware/update/staged.py).

from firmware.boot import partitions
from firmware.smp.server import SmpServer
from firmware.update.brokered import BrokerBackend
from firmware.update.flash_dir import FileSink
from firmware.update.policy_upload import PolicyFiles
from firmware.update.upload import Upload

STAGED = "/upload/staged.bundle"  # under the run dir: the loader made /run/phone/upload ours
STAGED_POLICY = "/upload/policy.json"  # firmware/boot/broker_policy.py STAGED_NAME
UKI_CAPACITY = 48 << 20  # bytes of a staged UKI package (firmware/boot/broker_uki.py MAX_PACKAGE)


class PhoneUpdates:
    def __init__(self, device):
        self.device = device
        st = device._state()
        self.floor = st.get("anti_rollback_floor")
        self.pcr = st.get("component_pcr", 14)
        self.backend = BrokerBackend(device.broker, device.run_dir + STAGED)
        slot = st.get("slot") or {}
        uki = slot.get("uki")
        self.server = SmpServer(self.backend, self._new_upload, self._confirmed,
                                PolicyFiles(lambda: FileSink(device.run_dir + STAGED_POLICY),
                                            self._install_policy),
                                self._new_uki_upload if isinstance(uki, dict) else None)
        # a trial of the bundle, the UKI or both (one update): confirmed together when ready
        self.trial = bool(slot.get("trial")) or bool(isinstance(uki, dict) and uki.get("trial"))
        self.confirm_error = None

    def _install_policy(self, length, sha_hex):
        """A signed PCR policy received over SMP: the root broker checks it and adds it to the
        sealed store (firmware/boot/broker_policy.py)."""
        return self.device.broker.call("policy_install", length=length, sha=sha_hex)

    def _new_upload(self, sink, length, sha):
        try:
            _, verify = partitions.vendor_key()
        except Exception:  # noqa: BLE001  no key: the upload is refused as unsigned
            verify = None
        capacity = self.backend.capacity()
        return Upload(sink, length, sha, verify, partitions.board_name(), self.floor, capacity,
                      self.pcr)

    def _new_uki_upload(self, sink, length, sha):
        """MCUmgr image 1: a vendor-signed UKI package (firmware/update/uki_package.py), staged
        here and installed on the ESP by the root broker (firmware/boot/broker_uki.py)."""
        from firmware.update.uki_package import UkiUpload
        try:
            _, verify = partitions.vendor_key()
        except Exception:  # noqa: BLE001  no key: the upload is refused as unsigned
            verify = None
        up = UkiUpload(sink, length, sha, verify, partitions.board_name(), self.floor, UKI_CAPACITY)
        up.image = 1
        return up

    def _confirmed(self, counter):
        if self.floor is None or counter > self.floor:
            self.floor = counter
        self.trial = False

    def ready(self):
        """(ready, why not): console up (we run in its loop), credentials released, registered
        when there is a SIP account."""
        hook = self.device._hook
        if hook is None or not hook.status_fields().get("unsealed"):
            return False, "credentials not released"
        if hook.sip_account() is not None and not self.device.calls.status().get("registered"):
            return False, "not registered"
        return True, None

    def tick(self):
        """Confirm the running trial image once ready (through the broker, which raises the
        anti-rollback floor to its counter); -> a line for the console, or None."""
        if not self.trial:
            return None
        ok, _ = self.ready()
        if not ok:
            return None
        self.trial = False
        try:
            counter = self.backend.set_state(None, True)
        except Exception as e:  # noqa: BLE001  reported; the next boot then reverts
            self.confirm_error = "%s: %s" % (e.__class__.__name__, e)
            return "update: confirming the trial image failed: %s" % self.confirm_error
        ready = "ready: credentials released%s" % (
            ", registered" if self.device._hook.sip_account() else "")
        if counter is None:  # a UKI trial alone: the bundle's counter, and the floor, stay
            return "update: trial image confirmed (%s)" % ready
        self._confirmed(counter)
        return "update: trial image confirmed (%s); anti-rollback floor raised to %d" % (ready, counter)

    def status(self):
        try:
            return self.backend.slot_status()
        except Exception as e:  # noqa: BLE001  shown in status
            return {"error": "%s: %s" % (e.__class__.__name__, e)}
