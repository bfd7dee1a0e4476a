# The boot hook the phone application calls once, after the stage loader's PCR 14 separator:
#
#     from firmware.secrets import hook
#     status = hook.release_at_boot(tpm)          # dict: metadata only, safe to print
#     ... status["unsealed"] is True, or False with status["reason"] (state "integrity-failed")
#     hook.merge_status(console_status_dict)      # fold it into the console's `status` answer
#     hook.credentials()                          # the Released object (None unless unsealed)
#     hook.sip_account()                          # (username, password) for the SIP UA, or None
#     hook.unlock(tpm, pin)                       # the PIN-bound user secret, on demand
#     hook.forget()                               # wipe before power-off
#
# and the stage loader (root, before dropping privileges) may call
#     hook.copy_store(os.environ["PHONE_DATA_DEV"], "/run/phone")
# so the unprivileged phone reads the store without access to the raw partition.
#
# It reads the sealed store (store.py) from the data partition, the components this boot
# measured from the stage loader's state file, and keeps the released secrets in RAM only.

import json

from firmware import compat
from firmware.errors import ParseError
from firmware.secrets import release as R
from firmware.secrets import rollback, store

RUN_DIR = "/run/phone"
STORE_COPY = "sealed-store.bin"  # optional copy of the data partition's store in RUN_DIR

_last = {"unsealed": False, "state": "locked", "reason": "credentials not released yet"}
_released = None


def _getenv(key):
    try:
        import os
        return os.getenv(key)
    except (ImportError, AttributeError):
        return None


def store_paths(run_dir=RUN_DIR):
    """Where the store may be: a copy in run_dir (the stage loader may put it there), then the
    data partition device the initramfs found (PHONE_DATA_DEV)."""
    out = [run_dir + "/" + STORE_COPY]
    dev = _getenv("PHONE_DATA_DEV")
    if dev and not dev.endswith("/missing"):
        out.append(dev)
    return out


def uptime_s():
    """Seconds since the kernel booted (/proc/uptime), a clock every process of the guest shares;
    None where there is none (MicroPython boards, tests)."""
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _separator_uptime(run_dir):
    try:
        with open(run_dir + "/state.json", "rb") as f:
            v = json.loads(f.read()).get("separator_uptime_s")
    except (OSError, ValueError, AttributeError):
        return None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def measured_components(run_dir=RUN_DIR):
    """Components the stage loader measured this boot ([{name, version, sha256}]) or None."""
    try:
        with open(run_dir + "/state.json", "rb") as f:
            st = json.loads(f.read())
    except (OSError, ValueError):
        return None
    comps = st.get("components")
    return comps if isinstance(comps, list) else None


def load_store(paths):
    errors = []
    for p in paths:
        try:
            return store.read_file(p), None
        except OSError as e:
            errors.append("%s: %s" % (p, e))
        except ParseError as e:
            errors.append("%s: %s" % (p, e))
    return None, "; ".join(errors) or "no store path"


def release_at_boot(tpm, run_dir=RUN_DIR, paths=None, commit_rollback=True):
    """Release the credentials that need no PIN. Returns the status dict (and keeps it)."""
    global _last, _released
    t0 = compat.monotonic_ms()
    meta, err = load_store(paths if paths is not None else store_paths(run_dir))
    if meta is None:
        res = R.StoreFailure("no sealed credentials: %s" % err)
    else:
        res = R.release(tpm, meta, measured=measured_components(run_dir))
    status = res.status()
    if res.unsealed:
        if _released is not None:
            _released.wipe()
        _released = res
        if commit_rollback and res.version is not None:
            try:
                rollback.commit(tpm, res.version, meta["authorized"]["nv_index"])
                status["rollback_committed"] = res.version
            except Exception as e:  # the secrets are out; a failed commit only delays revocation
                status["rollback_error"] = str(e)
    status["release_ms"] = compat.monotonic_ms() - t0
    # separator -> unsealed, when the stage loader recorded the separator's uptime in state.json
    sep, now = _separator_uptime(run_dir), uptime_s()
    if sep is not None and now is not None:
        status["separator_to_release_ms"] = int((now - sep) * 1000)
    _last = status
    return status


def unlock(tpm, pin, name="user-secret", run_dir=RUN_DIR, paths=None):
    """Unseal a PIN-bound object; -> (Released or None, status dict). Wrong PINs count toward
    the TPM's lockout; the PIN goes only into the session HMAC key, never on the wire."""
    meta, err = load_store(paths if paths is not None else store_paths(run_dir))
    if meta is None:
        res = R.StoreFailure("no sealed credentials: %s" % err)
    else:
        res = R.release(tpm, meta, pin=pin, names=[name], measured=measured_components(run_dir))
    return (res if res.unsealed else None), res.status()


def copy_store(device, run_dir=RUN_DIR):
    """Copy the store (header + body only, after the header checks) from the data partition to
    run_dir/sealed-store.bin, world-readable: nothing in it is secret. -> bytes copied."""
    data = store.read_bytes(device)
    path = run_dir + "/" + STORE_COPY
    with open(path, "wb") as f:
        f.write(data)
    try:
        import os
        os.chmod(path, 0o444)
    except (ImportError, AttributeError, OSError):
        pass
    return len(data)


def merge_status(status, last=None):
    """Fold the release result (this module's, or `last`: the one the TPM broker reported) into
    the console's status dict (in place, and returned):
    "unsealed", "unsealed_reason", "credentials_state", the diagnosis lists, "release_ms"; on a
    policy refusal the device state becomes "integrity-failed" with the TPM's reason (a stage
    loader refusal, state "refused", keeps its own state and reason)."""
    if last is None:
        last = _last
    status["unsealed"] = bool(last.get("unsealed"))
    status["credentials_state"] = last.get("state")
    if last.get("unsealed"):
        status.pop("unsealed_reason", None)
    else:
        status["unsealed_reason"] = last.get("reason")
    for k in ("pcrs_differ", "components_differ", "release_ms", "separator_to_release_ms", "tpm_rc"):
        if k in last:
            status[k] = last[k]
    if last.get("state") == R.STATE_INTEGRITY_FAILED and status.get("state") != "refused":
        status["state"] = R.STATE_INTEGRITY_FAILED
        status["reason"] = last.get("reason")
    return status


def sip_account():
    """(username, password) of the released SIP account, or None when it is not released. The
    sealed form is compact JSON {"password", "username"}; Python strings cannot be wiped, so use
    them for registration and drop them (the bytearray stays wipeable via forget())."""
    if _released is None or "sip-account" not in _released.names():
        return None
    try:
        d = json.loads(bytes(_released.get("sip-account")))
    except ValueError:
        return None
    if not isinstance(d, dict) or not isinstance(d.get("username"), str) or not isinstance(d.get("password"), str):
        return None
    return d["username"], d["password"]


def status_fields():
    return dict(_last)


def credentials():
    return _released


def forget():
    """Wipe the released credentials (before power-off)."""
    global _released, _last
    if _released is not None:
        _released.wipe()
        _released = None
    _last = {"unsealed": False, "state": "locked", "reason": "credentials wiped"}
