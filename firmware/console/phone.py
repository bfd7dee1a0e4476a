# The console's view of the real device: the state file the stage loader wrote, the TPM through
# the kernel's resource manager, the firmware's event log and the phone's own log. All paths come
# from the constructor so tests and other boards can point elsewhere.

import json
import os

from firmware.console.calls import REFUSED_SEALED, CallControl

FIRMWARE_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
RUN_DIR = "/run/phone"
TPM_DEVICE = "/dev/tpmrm0"
PHONE_PCR = 14  # a state.json without component_pcr: a loader that measured into PCR 14
USER_SECRET = "user-secret"  # the PIN-bound sealed object (host_tools/provision)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _kernel_cmdline(path="/proc/cmdline"):
    try:
        return _read(path).decode("utf-8", "replace").strip()
    except OSError:
        return None


class PhoneDevice:
    def __init__(self, run_dir=RUN_DIR, tpm_device=TPM_DEVICE, firmware_log=FIRMWARE_LOG, broker=None):
        self.run_dir = run_dir
        self.tpm_device = tpm_device
        # On the device the TPM is the stage loader's: `broker` (firmware.console.tpm_broker
        # BrokerChannel) serves what the phone may do; tpm_device is then never opened.
        self.broker = broker
        self.firmware_log_path = firmware_log
        self._tpm = None
        self._hook = None          # firmware.secrets.hook once credentials were asked for
        self._hook_error = None    # why they could not be asked for
        self.calls = CallControl()
        self.phone = None          # firmware.phone.io_cpython.PhoneIo once started
        self._start_at = None      # when to try (again) to start the phone, ms
        self.start_attempts = 0
        self.settings = None       # firmware.console.netconfig.phone_settings of device-config
        self.media_socks = None    # (rtp, rtcp) bound once the phone may run
        self._judge = None         # firmware.phone.remote.RemoteJudge once the phone starts
        self._judge_error = None   # why calls are not judged
        # firmware updates over SMP on the console line (firmware/console/updates.py): only with
        # the loader's broker, which holds the banks and the slot record
        self.smp = None
        if broker is not None and self._state().get("slot") is not None:
            from firmware.console.updates import PhoneUpdates
            self.smp = PhoneUpdates(self)

    def _state(self):
        try:
            return json.loads(_read(self.run_dir + "/state.json"))
        except (OSError, ValueError) as e:
            return {"state": "unknown", "reason": "no stage-loader state: %s" % e}

    def tpm(self):
        if self.broker is not None:
            raise RuntimeError("the TPM is the broker's: this process does not open it")
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
        if self.broker is not None:
            from firmware.console.tpm_broker import BrokeredHook
            try:
                h = BrokeredHook(self.broker)
                h.fetch()  # the broker unsealed right after the separator
                self._hook = h
            except Exception as e:  # noqa: BLE001  a refused/broken channel is reported
                self._hook_error = "credential release failed: %s: %s" % (e.__class__.__name__, e)
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
        cmdline = _kernel_cmdline()
        if cmdline is not None:
            out["kernel_cmdline"] = cmdline  # what the kernel really got (an override shows here)
        getuid = getattr(os, "getuid", None)
        if getuid is not None:
            out["uid"] = getuid()  # the stage loader drops root before starting the phone
        # the board's component register, as the loader recorded it (state.json); "pcrN" names it
        # (pcr14 on qemu-x86_64, docs/pcr-map.md)
        pcr = st.get("component_pcr", PHONE_PCR)
        if isinstance(pcr, bool) or not isinstance(pcr, int) or not 0 <= pcr <= 23:
            pcr = PHONE_PCR
        out["component_pcr"] = pcr
        key = "pcr%d" % pcr
        try:
            out[key] = self.pcrs("sha256")[pcr].hex()
        except Exception as e:
            out[key] = None
            out[key + "_error"] = str(e)
        out["unsealed"] = False
        if self._hook is not None:
            self._hook.merge_status(out)
        else:
            out["unsealed_reason"] = self._hook_error or "credentials not released yet"
        da_state, da_error = self.dictionary_attack()
        if da_state is not None:
            out["da"] = da_state
        else:
            out["da_error"] = da_error
        out.update(self.calls.status())
        if self._judge is not None:
            out["min_remote_integrity"] = self._judge.min_level
        elif self._judge_error is not None:
            out["remote_integrity_error"] = self._judge_error
        if self.media_socks is not None:
            # what peers are told (SDP c=/m=) and the host forwards (host_tools.qemu)
            out["media_address"] = self.settings["media_address"]
            out["media_port"] = self.media_socks[0].getsockname()[1]
        if self.phone is not None and self.phone.reconnect_at is not None:
            out["registered_reason"] = "registrar connection lost; reconnecting"
        if st.get("uki") is not None:
            out["uki"] = st["uki"]  # the UKI bank this boot came from (state.json, the loader's)
        if self.smp is not None:
            # the slot record now (the broker's): running bank, trial, confirmed, last event
            out["slot"] = self.smp.status()
        elif st.get("slot") is not None:
            out["slot"] = st["slot"]
        return out

    # --- attestation (issue 10; firmware/attest/evidence.py asks these) ------------------------

    def tpm_quote(self, nonce):
        """The broker's quote answer for `nonce` (bytes): quote, signature, pcrs, ak_pub, ak_cert."""
        if self.broker is not None:
            ans = self.broker.call("quote", nonce=bytes(nonce).hex())
            ans.pop("ok", None)
            return ans
        from firmware.attest import quote
        from firmware.secrets import hook
        meta, err = hook.load_store(hook.store_paths(self.run_dir))
        if meta is None:
            raise quote.EvidenceError("no provisioning store: %s" % err)
        from firmware.boot.partitions import component_pcr
        return quote.quote(self.tpm(), quote.attestation_record(meta), nonce, component_pcr()[0])

    def board(self):
        from firmware.boot.partitions import board_name
        return board_name() or "unknown"

    def image_version(self):
        v = self._state().get("bundle_version")
        return v if isinstance(v, str) and v else None

    def quote(self, nonce):
        """The console's `quote`: evidence (firmware/attest/evidence.py) for `nonce` (bytes)."""
        from firmware.attest import evidence
        return evidence.collect(nonce, self)

    def dictionary_attack(self):
        """(the TPM's DA state (firmware.secrets.da.state), None) or (None, why unreadable)."""
        try:
            if self.broker is not None:
                return self.broker.call("da")["da"], None
            from firmware.secrets import da
            return da.state(self.tpm()), None
        except Exception as e:
            return None, "%s: %s" % (e.__class__.__name__, e)

    def unlock_pin(self, pin):
        """The console's `pin`: have the TPM unseal the PIN-bound user secret (hook.unlock) and
        answer metadata only. Nothing on this device consumes the user secret yet, so it is wiped
        at once: the answer proves the TPM released it (its name and length), nothing more. A
        wrong PIN costs one dictionary-attack try (the TPM's count is in "da")."""
        if self._hook is None:
            # a refused bundle (or no credential support) never asks the TPM for anything
            out = {"unlocked": False, "state": "unavailable",
                   "reason": self._hook_error or "credentials not released yet"}
        elif self.broker is not None:
            try:
                out = self._hook.unlock(pin)
                out.pop("ok", None)
            except Exception as e:  # noqa: BLE001  the broker's refusal names why
                out = {"unlocked": False, "state": "unavailable",
                       "reason": "%s: %s" % (e.__class__.__name__, e)}
        else:
            released, st = self._hook.unlock(self.tpm(), pin, name=USER_SECRET, run_dir=self.run_dir)
            if released is not None:
                try:
                    out = {"unlocked": True, "name": USER_SECRET,
                           "length": len(released.get(USER_SECRET))}
                finally:
                    released.wipe()
            else:
                out = {"unlocked": False, "state": st.get("state"), "reason": st.get("reason")}
                if "tpm_rc" in st:
                    out["tpm_rc"] = st["tpm_rc"]
        da_state, da_error = self.dictionary_attack()
        if da_state is not None:
            out["da"] = da_state
        else:
            out["da_error"] = da_error
        return out

    # --- the SIP phone ------------------------------------------------------------------------------

    def prepare_phone(self, now):
        """Decide whether the phone may start: only with credentials the TPM released. A phone
        whose unseal failed is refused for good (it cannot register or call). Otherwise parse the
        signed device-config and bind the media ports now (status reports them at once, so the
        host can forward them); the SIP flow starts in the loop."""
        if self._hook is None or not self._hook.status_fields().get("unsealed"):
            why = self._hook_error
            if self._hook is not None:
                why = self._hook.status_fields().get("reason")
            self.calls.refuse(REFUSED_SEALED, "credentials are sealed: %s"
                              % (why or "not released"))
            return False
        if self._hook.sip_account() is None:
            self.calls.refuse("integrity-failed: no SIP account among the released credentials",
                              "no SIP account was provisioned for this device")
            return False
        from firmware.console.netconfig import phone_settings
        from firmware.phone.sockets import bind_media_pair
        try:
            self.settings = phone_settings(self.device_config())
        except (OSError, ValueError) as e:
            self.calls.refuse("phone not configured: %s" % e, "bad device-config: %s" % e)
            return False
        s = self.settings
        try:
            self.media_socks = bind_media_pair(s["media_bind"], port=s["media_port"])
        except (OSError, ValueError) as e:
            self.calls.refuse("phone not configured: media ports: %s" % e,
                              "cannot bind media ports on %s: %s" % (s["media_bind"], e))
            return False
        self._start_at = now
        return True

    def device_config(self):
        return json.loads(_read(self.run_dir + "/etc/device-config"))

    def start_phone(self, now):
        """Connect to the registrar from the signed device-config over verified TLS (CA: the
        signed ca-bundle) with the released SIP account, bind media, and REGISTER. On failure
        (no network yet, registrar down, certificate refused) retry with backoff."""
        self._start_at = None
        self.start_attempts += 1
        from firmware.attest import evidence
        from firmware.phone.io_cpython import PhoneIo
        from firmware.sip.ua import UaConfig
        evidence.set_device(self)  # evidence.collect(nonce) in the phone's call set-up asks this device
        s = self.settings
        user, password = self._hook.sip_account()
        cfg = UaConfig(user, s["domain"], password, "TLS", keepalive_ms=s["keepalive_ms"])
        judge = self.remote_judge()
        attester = self.attester()
        try:
            self.phone = PhoneIo.open(cfg, s["registrar"], s["port"], self.run_dir + "/etc/ca-bundle",
                                      media_host=s["media_address"], media_bind=s["media_bind"],
                                      media_port=s["media_port"], media_socks=self.media_socks,
                                      server_hostname=s["tls_server_name"],
                                      address_map=s["address_map"], suites=s["suites"],
                                      attester=attester, judge=judge)
        except Exception as e:  # OSError, ssl errors: never an unverified fallback
            delay = min(30000, 2000 * self.start_attempts)
            self.calls.detach("registrar %s:%d not reachable (attempt %d, next in %d s): %s"
                              % (s["registrar"], s["port"], self.start_attempts, delay // 1000,
                                 e))
            self._start_at = now + delay
            return
        password = None
        self.calls.attach(self.phone.app)
        self.phone.app.register()

    # --- the remote party's integrity at call set-up (docs/attestation.md) ------------------------

    def attester(self):
        """nonce -> evidence bytes for our INVITEs and 2xx (a TPM quote through the broker)."""
        from firmware.attest import evidence

        def attest(nonce):
            return evidence.encode(self.quote(nonce))
        return attest

    def remote_judge(self):
        """A RemoteJudge with the trust anchors on the data partition and the device-config's
        min_remote_integrity; None (calls are then not judged, and say why in the log) when the
        anchors are missing or do not verify."""
        from firmware.phone.remote import RemoteJudge
        if self._judge is None:
            try:
                self._judge = RemoteJudge(self.trust_anchors(), self.settings["min_remote_integrity"])
                self._judge_error = None
            except Exception as e:  # noqa: BLE001  reported in status
                self._judge_error = "%s: %s" % (e.__class__.__name__, e)
        return self._judge

    def trust_anchors(self):
        """firmware.attest.trust.Trust from what provisioning recorded on the data partition
        (device CA, vendor-signed reference set: through the broker, which reads the partition)
        and the vendor key in the measured initramfs. TrustError/ValueError name what is missing."""
        import binascii
        from firmware.attest import trust
        from firmware.boot.partitions import VENDOR_KEY_PATHS
        if self.broker is not None:
            t = self.broker.call("trust")
        else:
            from firmware.secrets import hook, store
            meta, err = hook.load_store(hook.store_paths(self.run_dir))
            if meta is None:
                raise ValueError("no provisioning store: %s" % err)
            t = store.trust_anchors(meta)
        vendor = None
        for p in VENDOR_KEY_PATHS:
            try:
                vendor = _read(p)
                break
            except OSError:
                continue
        if vendor is None:
            raise ValueError("no vendor key at %s" % " or ".join(VENDOR_KEY_PATHS))
        try:
            refs = binascii.a2b_base64(t["references"])
            sig = binascii.a2b_base64(t["references_sig"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("the broker's trust answer lacks a base64 reference set")
        return trust.load(refs, sig, vendor, [t["device_ca"]])

    def require_integrity(self, level):
        """The console's `integrity LEVEL`: raise the minimum remote level for this boot."""
        judge = self._judge
        if judge is None:
            from firmware.console.calls import Refused
            raise Refused("remote integrity is not judged: %s" % (self._judge_error or "phone not started"))
        judge.require(level)
        return {"min_remote_integrity": judge.min_level, "floor": judge.floor}

    def messages(self):
        """The phone application's last log lines (firmware/phone/app.py keeps LOG_KEEP)."""
        app = self.phone.app if self.phone is not None else None
        return list(app.log_lines) if app is not None else []

    # the console's I/O loop (loop.serve_select) drives these
    def take_notices(self):
        """One-line notices for the console (the remote party's level, once known)."""
        app = self.phone.app if self.phone is not None else None
        if app is None or not app.notices:
            return []
        out = app.notices
        app.notices = []
        return out

    def sockets(self):
        return self.phone.sockets() if self.phone is not None else []

    def next_deadline(self):
        times = [self._start_at]
        if self.phone is not None:
            times.append(self.phone.next_deadline())   # includes the 20 ms media timer
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def pending(self):
        p = self.phone
        return p is not None and not p.flow.closed and p.flow.pending()

    def step(self, ready, now):
        if self._start_at is not None and self._start_at <= now:
            self.start_phone(now)
        if self.phone is not None:
            self.phone.handle_ready(ready, now)
            self.calls.tick(now)
            self.phone.flush()

    def call(self, uri, tone=None):
        cid = self.calls.call(uri, tone)
        self._flush()
        return cid

    def answer(self, tone=None):
        cid = self.calls.answer(tone)
        self._flush()
        return cid

    def hangup(self):
        cid = self.calls.hangup()
        self._flush()
        return cid

    def _flush(self):
        if self.phone is not None:
            self.phone.flush()

    def pcrs(self, bank):
        if self.broker is not None:
            got = self.broker.call("pcrs", bank=bank)["pcrs"]
            return {int(k): bytes.fromhex(v) for k, v in got.items()}
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
        if self.phone is not None:
            try:
                if self.phone.app.call_id is not None:
                    self.phone.app.hangup()
                self.phone.app.unregister()
                self.phone.flush()
            except Exception:
                pass    # powering off anyway
            self.phone.close()
            self.phone = None
            self.calls.detach("powered off")
        if self._hook is not None:
            self._hook.forget()  # wipe released secrets before the power goes
        if self.broker is not None:
            self.broker.call("shutdown")
            return
        self.tpm().shutdown(clear=True)
