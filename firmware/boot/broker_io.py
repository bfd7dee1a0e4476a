# The TPM broker's I/O (CPython, root): a child of the stage loader that holds /dev/tpmrm0 and
# serves broker.py's requests on its end of a SOCK_SEQPACKET socketpair; the phone has the other
# end and no TPM device (firmware/boot/__main__.py). It unseals the boot credentials itself, at
# once, so the separator -> unsealed time does not wait for the console to start.

import json
import os
import socket

from firmware.boot import broker


class TpmOps:
    """The operations the broker serves, on the TPM `tpm` (firmware.tpm.client.Tpm)."""

    def __init__(self, tpm, run_dir, hook, updates=None):
        self.tpm = tpm
        self.run_dir = run_dir
        self.hook = hook  # firmware.secrets.hook, or None when this image has no sealed store
        self.allowed = False  # the loader verified the bundle: the TPM may be asked to unseal
        self.updates = updates  # broker_slots.SlotOps, or None when there are no firmware banks

    def release(self, allowed, refused_reason=None):
        """The boot release, only for a bundle the loader verified (`allowed`)."""
        self.allowed = bool(allowed)
        if self.hook is None:
            return
        if not allowed:
            self.hook._last = {"unsealed": False, "state": "locked", "reason": refused_reason}
            return
        # a trial image does not move the anti-rollback floor at release: only its confirm does
        # (broker_slots.py), so a trial that never confirms leaves the old bank bootable
        trial = self.updates is not None and self.updates.trial
        self.hook.release_at_boot(self.tpm, run_dir=self.run_dir, commit_rollback=not trial)

    def credentials(self):
        if self.hook is None:
            return {"status": {"unsealed": False, "state": "unavailable",
                               "reason": "no credential store support in this image"}, "sip": None}
        sip = self.hook.sip_account()
        return {"status": self.hook.status_fields(), "sip": list(sip) if sip else None}

    def unlock(self, pin):
        # a refused bundle never asks the TPM for anything; a verified one may try even when the
        # boot release failed (the TPM then says why, before counting any PIN try)
        if self.hook is None or not self.allowed:
            return {"unlocked": False, "state": "unavailable",
                    "reason": (self.hook.status_fields().get("reason") if self.hook else None)
                    or "credentials not released"}
        released, st = self.hook.unlock(self.tpm, bytes(pin), name="user-secret", run_dir=self.run_dir)
        if released is not None:
            try:
                return {"unlocked": True, "name": "user-secret", "length": len(released.get("user-secret"))}
            finally:
                released.wipe()
        out = {"unlocked": False, "state": st.get("state"), "reason": st.get("reason")}
        if "tpm_rc" in st:
            out["tpm_rc"] = st["tpm_rc"]
        return out

    def pcrs(self, bank):
        return {"pcrs": {str(i): v.hex() for i, v in self.tpm.pcr_read_all(bank).items()}}

    def quote(self, nonce):
        """TPM2_Quote with the AK provisioning recorded in the data partition's store (read
        afresh: root reads the partition; the phone cannot)."""
        from firmware.attest import quote
        from firmware.secrets import hook
        meta, err = hook.load_store(hook.store_paths(self.run_dir))
        if meta is None:
            raise quote.EvidenceError("no provisioning store: %s" % err)
        return quote.quote(self.tpm, quote.attestation_record(meta), nonce, _component_pcr())

    def trust(self):
        """The public trust anchors in the store (device CA, vendor-signed reference set): the
        phone judges call peers with them (firmware/phone/remote.py) but cannot read the
        partition itself."""
        from firmware.secrets import hook, store
        meta, err = hook.load_store(hook.store_paths(self.run_dir))
        if meta is None:
            raise ValueError("no provisioning store: %s" % err)
        return store.trust_anchors(meta)

    def _updates(self):
        if self.updates is None:
            raise OSError("no firmware banks on this device (slot record unavailable)")
        return self.updates

    def slots(self):
        return self._updates().slots_read()

    def slot_state(self, digest_hex, confirm):
        return self._updates().slot_state(digest_hex, confirm)

    def slot_erase(self, slot):
        return self._updates().slot_erase(slot)

    def slot_install(self, length, sha_hex):
        return self._updates().slot_install(length, sha_hex)

    def uki_install(self, length, sha_hex):
        return self._updates().uki_install(length, sha_hex)

    def policy_install(self, length, sha_hex):
        from firmware.boot import broker_policy
        return broker_policy.install_staged(self.tpm, self.run_dir + "/" + broker_policy.STAGED_NAME,
                                            length, sha_hex)

    def da(self):
        from firmware.secrets import da
        return {"da": da.state(self.tpm)}

    def shutdown(self):
        if self.hook is not None:
            self.hook.forget()
        self.tpm.shutdown(clear=True)
        return {}


def serve(sock, core, log):
    """Answer requests until the phone's end is closed (every console exited for good)."""
    while True:
        try:
            data = sock.recv(broker.MAX_REQUEST + 1)
        except InterruptedError:
            continue
        except OSError as e:
            log("broker: channel error: %s" % e)
            return
        if not data:
            return
        answer, line = core.handle(data)
        if line:
            log(line)
        try:
            sock.send(answer)
        except OSError as e:
            log("broker: cannot answer: %s" % e)
            return


def channel():
    """(broker end, phone end) of a new SOCK_SEQPACKET socketpair."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def status_line(fields):
    return json.dumps(fields, sort_keys=True)



def start_broker(tpm, broker_end, verified, reason, run_dir, fork, max_fd, log, updates=None):
    """Fork the broker (root); it unseals the boot credentials at once when the bundle was
    verified, then serves. This process closes its broker end and its TPM file descriptor, so
    the broker is the only holder of the TPM. -> the broker's pid."""
    try:
        from firmware.secrets import hook
    except ImportError:
        hook = None
    pid = fork()
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
            os.closerange(low, max_fd)
            if updates is not None:
                updates.tpm = tpm
            ops = TpmOps(tpm, run_dir, hook, updates)
            if tpm is not None:
                ops.release(verified, reason)
            serve(broker_end, broker.Broker(ops), log)
        except BaseException as e:  # noqa: BLE001  reported; the phone then sees a closed channel
            log("broker: %s: %s" % (e.__class__.__name__, e))
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


def _component_pcr():
    """The register the loader measured the bundle into (the image's /opt/phone/component-pcr).
    An unusable setting made the loader refuse the bundle already; the quote then covers the
    default register, where that refused bundle was measured."""
    from firmware.boot.partitions import component_pcr
    return component_pcr()[0]
