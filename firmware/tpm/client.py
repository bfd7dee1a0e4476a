# The TPM 2.0 client: `Tpm(transport)` runs command descriptions from commands.py through one
# engine (sessions, cpHash/rpHash, parameter encryption) and offers the commands the firmware
# needs as methods. The transport is anything with send(command_bytes) -> response_bytes.

from firmware import compat
from firmware.errors import ParseError
from firmware.tcg_alg import HASH_ALG_IDS, HASH_ALG_NAMES
from firmware.tpm import commands as K
from firmware.tpm import constants as C
from firmware.tpm.ecdh import ecdh_p256
from firmware.tpm.errors import TPM_RC_INITIALIZE, TpmError
from firmware.tpm.kdf import kdfe
from firmware.tpm.marshal import Reader, Writer
from firmware.tpm.nv import nv_name, parse_nv_public
from firmware.tpm.public import object_name, parse_public
from firmware.tpm.session import PasswordSession, Session, SessionError, session_key

MAX_RETRIES = 20

AES128_CFB = (C.TPM_ALG_AES, 128, C.TPM_ALG_CFB)


def _hash_alg(bank):
    if isinstance(bank, int):
        return bank
    alg = HASH_ALG_IDS.get(bank)
    if alg is None:
        raise ValueError("unknown hash algorithm %r" % (bank,))
    return alg


class Tpm:
    def __init__(self, transport):
        self.transport = transport
        self._names = {}  # handle -> Name of loaded objects (for cpHash, Part 1 §16)

    # --- the engine --------------------------------------------------------------------------

    def execute(self, cmd, handles=(), params=None, sessions=(), auths=()):
        """Run `cmd`. `sessions` are Session/PasswordSession objects, one per authorized handle
        first, then any extra sessions used only for parameter encryption; `auths` are the
        authValues of the authorized entities (default empty). Handles that need authorization
        and have no session get an empty password session. Returns a dict of response handles
        and parameters."""
        sessions = list(sessions)
        auths = list(auths)
        while len(sessions) < cmd.auth_handles:
            sessions.append(PasswordSession())
        while len(auths) < len(sessions):
            auths.append(b"")
        if len(sessions) > C.MAX_SESSIONS:
            raise ValueError("at most %d sessions per command" % C.MAX_SESSIONS)
        n_auth = cmd.auth_handles
        param_bytes = K.marshal_params(cmd, params or {})

        dec = self._crypt_session(sessions, C.TPMA_SESSION_DECRYPT, cmd.encrypts_command, cmd, "decrypt")
        enc = self._crypt_session(sessions, C.TPMA_SESSION_ENCRYPT, cmd.encrypts_response, cmd, "encrypt")

        for attempt in range(MAX_RETRIES):
            auth_area = None
            sent_params = param_bytes
            if sessions:
                # Fresh caller nonces first: the parameter key depends on them.
                for s in sessions:
                    if isinstance(s, Session):
                        s.nonce_caller = compat.random_bytes(len(s.nonce_caller))
                if dec is not None:
                    s = sessions[dec]
                    sent_params = _crypt_first(param_bytes, lambda d: s.encrypt_command_param(
                        d, auths[dec] if dec < n_auth else b""))
                cp = self._cp_hashes(cmd, handles, sent_params, sessions)
                w = Writer()
                for i, s in enumerate(sessions):
                    nd = sessions[dec].nonce_tpm if (i == 0 and dec not in (None, 0)) else b""
                    ne = sessions[enc].nonce_tpm if (i == 0 and enc not in (None, 0, dec)) else b""
                    w.raw(s.command_auth(cp, auths[i], i < n_auth, nd, ne))
                auth_area = w.bytes()
            rsp = self.transport.send(K.build_command(cmd, handles, sent_params, auth_area))
            try:
                out_handles, rparams, poff, rauths = K.split_response(cmd, rsp, len(sessions))
            except TpmError as e:
                if e.retryable and attempt + 1 < MAX_RETRIES:
                    continue
                raise
            break

        if sessions:
            rp = _rp_hashes(cmd, rparams, sessions)
            for i, s in enumerate(sessions):
                nonce, attrs, hmac = rauths[i]
                s.check_response(rp, nonce, attrs, hmac, auths[i], i < n_auth)
            if enc is not None:
                s = sessions[enc]
                rparams = _crypt_first(rparams, lambda d: s.decrypt_response_param(
                    d, auths[enc] if enc < n_auth else b""))
        out = K.unmarshal_params(cmd, rparams, poff)
        out.update(out_handles)
        return out

    @staticmethod
    def _crypt_session(sessions, bit, allowed, cmd, what):
        found = None
        for i, s in enumerate(sessions):
            if isinstance(s, Session) and s.attributes & bit:
                if found is not None:
                    raise ValueError("only one session may have the %s attribute" % what)
                if not allowed:
                    raise ValueError("%s: first parameter is not a TPM2B; cannot %s it" % (cmd.name, what))
                if not s.can_encrypt():
                    raise ValueError("session 0x%08x has no symmetric algorithm for %s" % (s.handle, what))
                if not s.session_key:
                    # swtpm accepts this, but the key then derives only from the nonces on the wire
                    # (and a PIN at most): an observer can decrypt. Fail closed (Part 1 §21.1).
                    raise ValueError("parameter encryption needs a salted session (start it with salt_key)")
                found = i
        return found

    def _cp_hashes(self, cmd, handles, param_bytes, sessions):
        # Part 1 §18.7 eq. 6: cpHash = H(commandCode || Name1 || Name2 || ... || parameters)
        data = Writer().u32(cmd.cc)
        for h in handles:
            data.raw(self.name_of(h))
        data.raw(param_bytes)
        blob = data.bytes()
        return {s.hash_name: compat.digest(s.hash_name, blob) for s in sessions if isinstance(s, Session)}

    def name_of(self, handle):
        """Name used in cpHash: the object's Name for transient/persistent objects, else the
        handle itself (PCRs, sessions, permanent handles; Part 1 §16)."""
        if handle >> 24 in (C.TPM_HT_TRANSIENT, C.TPM_HT_PERSISTENT):
            name = self._names.get(handle)
            if name is None:
                name = self.read_public(handle)["name"]
            return name
        if handle >> 24 == C.TPM_HT_NV_INDEX:
            name = self._names.get(handle)
            if name is None:
                name = self.nv_read_public(handle)["name"]
            return name
        return handle.to_bytes(4, "big")

    def forget_handles(self):
        """Drop cached Names: after a TPM reset every handle is gone."""
        self._names.clear()

    def _remember(self, handle, public_bytes):
        self._names[handle] = object_name(public_bytes)

    # --- start-up and random ------------------------------------------------------------------

    def startup(self, clear=True):
        """TPM2_Startup; returns False if the TPM was already started (TPM_RC_INITIALIZE)."""
        try:
            self.execute(K.Startup, params={"startupType": C.TPM_SU_CLEAR if clear else C.TPM_SU_STATE})
        except TpmError as e:
            if e.base == TPM_RC_INITIALIZE:
                return False
            raise
        return True

    def shutdown(self, clear=True):
        self.execute(K.Shutdown, params={"shutdownType": C.TPM_SU_CLEAR if clear else C.TPM_SU_STATE})

    def get_random(self, n):
        out = b""
        while len(out) < n:
            got = self.execute(K.GetRandom, params={"bytesRequested": min(n - len(out), 32)})["randomBytes"]
            if not got:
                raise ParseError("TPM returned no random bytes", field="randomBytes")
            out += got
        return out[:n]

    # --- capabilities -------------------------------------------------------------------------

    def get_capability(self, capability, prop=0, count=256):
        """TPM2_GetCapability -> (moreData, items); see structures.CAPABILITY_DATA for items."""
        out = self.execute(K.GetCapability, params={"capability": capability, "property": prop,
                                                    "propertyCount": count})
        cap, items = out["capabilityData"]
        if cap != capability:
            raise ParseError("asked for capability %d, got %d" % (capability, cap), field="capability")
        return bool(out["moreData"]), items

    def pcr_banks(self):
        """Allocated PCR banks: {hash name (or alg id): [indices]} (banks with no PCRs omitted)."""
        _, sel = self.get_capability(C.TPM_CAP_PCRS, 0, 1)
        return {HASH_ALG_NAMES.get(alg, alg): pcrs for alg, pcrs in sel if pcrs}

    def algorithms(self):
        more, items = self.get_capability(C.TPM_CAP_ALGS, 0, 128)
        return dict(items)

    def properties(self, first=C.TPM_PT_FIXED, count=128):
        """TPM properties from `first` on: {TPM_PT: value}, following moreData."""
        out = {}
        while True:
            more, items = self.get_capability(C.TPM_CAP_TPM_PROPERTIES, first, count)
            for prop, value in items:
                out[prop] = value
            if not more or not items:
                return out
            first = items[-1][0] + 1

    # --- PCRs ----------------------------------------------------------------------------------

    def pcr_read(self, selection):
        """TPM2_PCR_Read of [(alg, [indices])] -> (pcrUpdateCounter, selection read, digests)."""
        out = self.execute(K.PCR_Read, params={"pcrSelectionIn": selection})
        return out["pcrUpdateCounter"], out["pcrSelectionOut"], out["pcrValues"]

    def pcr_read_all(self, bank="sha256", pcrs=None):
        """{index: digest} for every PCR of `bank` (or the listed ones). The TPM answers with at most
        8 digests per call (Part 3 §22.4.1) and says which ones in pcrSelectionOut; ask again for
        the rest, and start over if pcrUpdateCounter moved in between, so the set is consistent."""
        alg = _hash_alg(bank)
        if pcrs is None:
            banks = self.pcr_banks()
            pcrs = banks.get(HASH_ALG_NAMES.get(alg, alg))
            if not pcrs:
                raise ValueError("PCR bank %r is not allocated in this TPM" % (bank,))
        for _ in range(MAX_RETRIES):
            want = sorted(pcrs)
            values = {}
            counters = set()
            while want:
                ctr, sel, digests = self.pcr_read([(alg, want)])
                counters.add(ctr)
                got = []
                for s_alg, idx in sel:
                    if s_alg != alg:
                        raise ParseError("PCR_Read answered bank 0x%04x" % s_alg, field="pcrSelectionOut")
                    got.extend(idx)
                if len(got) != len(digests) or not got:
                    raise ParseError("%d PCRs selected but %d digests" % (len(got), len(digests)),
                                     field="pcrValues")
                for i, d in zip(got, digests):
                    if i not in want:
                        raise ParseError("PCR %d was not asked for" % i, field="pcrSelectionOut")
                    values[i] = d
                want = [i for i in want if i not in values]
            if len(counters) == 1:
                return values
        raise ParseError("PCRs kept changing while being read", field="pcrUpdateCounter")

    def pcr_extend(self, index, digests, session=None, auth=b""):
        """TPM2_PCR_Extend of PCR `index` with {bank name: digest} or [(alg id, digest)]."""
        if isinstance(digests, dict):
            digests = [(_hash_alg(k), v) for k, v in digests.items()]
        self.execute(K.PCR_Extend, (index,), {"digests": digests},
                     [session] if session else (), [auth])

    # --- objects -------------------------------------------------------------------------------

    def create_primary(self, hierarchy, template, data=b"", user_auth=b"", session=None,
                       hierarchy_auth=b""):
        """TPM2_CreatePrimary -> dict handle, public (TPMT_PUBLIC bytes), name, parsed (dict)."""
        out = self.execute(K.CreatePrimary, (hierarchy,),
                           {"inSensitive": (user_auth, data), "inPublic": template, "outsideInfo": b"",
                            "creationPCR": []},
                           [session] if session else (), [hierarchy_auth])
        h = out["objectHandle"]
        self._names[h] = out["name"]
        if object_name(out["outPublic"]) != out["name"]:
            raise ParseError("name does not match outPublic", field="name")
        return {"handle": h, "public": out["outPublic"], "name": out["name"],
                "parsed": parse_public(out["outPublic"])}

    def create(self, parent, template, data=b"", user_auth=b"", session=None, parent_auth=b""):
        """TPM2_Create -> dict private, public (the two TPM2B contents to store and Load later)."""
        out = self.execute(K.Create, (parent,),
                           {"inSensitive": (user_auth, data), "inPublic": template, "outsideInfo": b"",
                            "creationPCR": []},
                           [session] if session else (), [parent_auth])
        return {"private": out["outPrivate"], "public": out["outPublic"]}

    def load(self, parent, private, public, session=None, parent_auth=b""):
        out = self.execute(K.Load, (parent,), {"inPrivate": private, "inPublic": public},
                           [session] if session else (), [parent_auth])
        h = out["objectHandle"]
        if object_name(public) != out["name"]:
            raise ParseError("loaded object's name does not match its public area", field="name")
        self._names[h] = out["name"]
        return h

    def read_public(self, handle):
        out = self.execute(K.ReadPublic, (handle,))
        if object_name(out["outPublic"]) != out["name"]:
            raise ParseError("name does not match outPublic", field="name")
        self._names[handle] = out["name"]
        return {"public": out["outPublic"], "name": out["name"], "qualifiedName": out["qualifiedName"],
                "parsed": parse_public(out["outPublic"])}

    def flush_context(self, handle):
        self.execute(K.FlushContext, params={"flushHandle": handle})
        self._names.pop(handle, None)

    # --- sessions and policy -------------------------------------------------------------------

    def start_auth_session(self, session_type=C.TPM_SE_POLICY, hash_alg=C.TPM_ALG_SHA256,
                           salt_key=None, symmetric=None, attributes=0, salt_public=None):
        """TPM2_StartAuthSession. With `salt_key` (handle of a loaded ECC P-256 decryption key such
        as the SRK) the session is salted: a random salt is sent encrypted to that key, so only the
        TPM and this client know the session key. `symmetric` (e.g. AES128_CFB) enables parameter
        encryption; set TPMA_SESSION_DECRYPT/ENCRYPT in `attributes` to use it on every command.
        `salt_public`: the salt key's parsed public area when already known (create_primary's
        "parsed"), to skip a ReadPublic; a wrong one only makes the session unusable."""
        hash_alg = _hash_alg(hash_alg)
        hname = HASH_ALG_NAMES[hash_alg]
        nonce_caller = compat.random_bytes(compat.digest_size(hname))
        salt = b""
        encrypted_salt = b""
        tpm_key = C.TPM_RH_NULL
        if salt_key is not None:
            salt, encrypted_salt = self._ecc_salt(salt_key, salt_public)
            tpm_key = salt_key
        out = self.execute(K.StartAuthSession, (tpm_key, C.TPM_RH_NULL),
                           {"nonceCaller": nonce_caller, "encryptedSalt": encrypted_salt,
                            "sessionType": session_type, "symmetric": symmetric, "authHash": hash_alg})
        key = session_key(hash_alg, salt, b"", out["nonceTPM"], nonce_caller)
        return Session(out["sessionHandle"], session_type, hash_alg, nonce_caller, out["nonceTPM"],
                       key, symmetric, attributes)

    def _ecc_salt(self, key_handle, salt_public=None):
        # Part 1 §11.4.10.3 and Annex C.6.1: one-pass ECDH; salt = KDFe(nameAlg, Z, "SECRET",
        # ephemeral x, key x, digest bits); encryptedSalt is the ephemeral point (TPMS_ECC_POINT).
        pub = salt_public or self.read_public(key_handle)["parsed"]
        if pub["type"] != C.TPM_ALG_ECC or pub["curveID"] != C.TPM_ECC_NIST_P256:
            raise ValueError("salt key must be an ECC NIST P-256 key")
        if not pub["objectAttributes"] & C.TPMA_OBJECT_DECRYPT:
            raise ValueError("salt key must be a decryption key")
        hname = HASH_ALG_NAMES[pub["nameAlg"]]
        ex, ey, z = ecdh_p256(pub["x"], pub["y"])
        salt = kdfe(hname, z, "SECRET", ex, pub["x"], 8 * compat.digest_size(hname))
        return salt, Writer().tpm2b(ex).tpm2b(ey).bytes()

    def policy_pcr(self, session, selection, pcr_digest=b""):
        """TPM2_PolicyPCR. With an empty `pcr_digest` the TPM uses its current PCR values; with
        the expected digest it fails at once (TPM_RC_VALUE) when they differ."""
        self.execute(K.PolicyPCR, (session.handle,), {"pcrDigest": pcr_digest, "pcrs": selection})

    def policy_auth_value(self, session):
        self.execute(K.PolicyAuthValue, (session.handle,))
        session.auth_value_needed = True
        session.password_needed = False

    def policy_password(self, session):
        self.execute(K.PolicyPassword, (session.handle,))
        session.password_needed = True
        session.auth_value_needed = False

    def policy_get_digest(self, session):
        return self.execute(K.PolicyGetDigest, (session.handle,))["policyDigest"]

    def policy_restart(self, session):
        self.execute(K.PolicyRestart, (session.handle,))
        session.auth_value_needed = False
        session.password_needed = False

    def policy_nv(self, session, nv_index, operand_b, operation, offset=0, auth_handle=None,
                  auth=b"", auth_session=None):
        """TPM2_PolicyNV (Part 3 §23.9): the policy holds only if `operation`(NV data at `offset`,
        operand_b) is true. Reading the index needs its authorization (by default the index itself
        with `auth`, through a password session unless `auth_session` is given)."""
        if auth_handle is None:
            auth_handle = nv_index
        self.execute(K.PolicyNV, (auth_handle, nv_index, session.handle),
                     {"operandB": operand_b, "offset": offset, "operation": operation},
                     [auth_session] if auth_session else (), [auth])

    def policy_authorize(self, session, approved_policy, policy_ref, key_name, ticket):
        """TPM2_PolicyAuthorize (Part 3 §23.16): if the session's digest equals `approved_policy`
        and `ticket` (from verify_signature) proves the key named `key_name` signed
        H(approved_policy || policy_ref), the digest becomes the PolicyAuthorize value."""
        self.execute(K.PolicyAuthorize, (session.handle,),
                     {"approvedPolicy": approved_policy, "policyRef": policy_ref, "keySign": key_name,
                      "checkTicket": ticket})

    def unseal(self, handle, session=None, auth=b"", extra_sessions=()):
        """TPM2_Unseal. Use a salted session with TPMA_SESSION_ENCRYPT so the secret is encrypted
        on the wire."""
        sessions = [session or PasswordSession()] + list(extra_sessions)
        return self.execute(K.Unseal, (handle,), sessions=sessions, auths=[auth])["outData"]

    # --- external keys and signatures ---------------------------------------------------------

    def load_external(self, public_bytes, hierarchy=C.TPM_RH_OWNER):
        """TPM2_LoadExternal of a public key alone (Part 3 §12.3) -> handle. `hierarchy` OWNER
        (not NULL) so verify_signature returns a ticket PolicyAuthorize accepts (§23.16)."""
        out = self.execute(K.LoadExternal, params={"inPrivate": b"", "inPublic": public_bytes,
                                                   "hierarchy": hierarchy})
        h = out["objectHandle"]
        if object_name(public_bytes) != out["name"]:
            raise ParseError("external key's name does not match its public area", field="name")
        self._names[h] = out["name"]
        return h

    def verify_signature(self, key_handle, digest, signature):
        """TPM2_VerifySignature (Part 3 §20.1) -> TPMT_TK_VERIFIED ticket dict; a bad signature
        is a TpmError (TPM_RC_SIGNATURE)."""
        ticket = self.execute(K.VerifySignature, (key_handle,),
                              {"digest": digest, "signature": signature})["validation"]
        if ticket["tag"] != C.TPM_ST_VERIFIED:
            raise ParseError("ticket tag 0x%04x is not TPM_ST_VERIFIED" % ticket["tag"], field="validation.tag")
        return ticket

    # --- NV storage ------------------------------------------------------------------------------

    def nv_define_space(self, public_bytes, auth=b"", owner_auth=b"", session=None,
                        hierarchy=C.TPM_RH_OWNER):
        """TPM2_NV_DefineSpace (Part 3 §31.3) in the owner hierarchy (or TPM_RH_PLATFORM for a
        TPMA_NV_PLATFORMCREATE index; `owner_auth` is then the platform's); `public_bytes` from
        nv.nv_public."""
        self.execute(K.NV_DefineSpace, (hierarchy,), {"auth": auth, "publicInfo": public_bytes},
                     [session] if session else (), [owner_auth])

    def nv_undefine_space(self, nv_index, owner_auth=b"", session=None, hierarchy=C.TPM_RH_OWNER):
        self.execute(K.NV_UndefineSpace, (hierarchy, nv_index), sessions=[session] if session else (),
                     auths=[owner_auth])
        self._names.pop(nv_index, None)

    def nv_read_public(self, nv_index):
        """TPM2_NV_ReadPublic -> dict public (TPMS_NV_PUBLIC bytes), name, parsed."""
        out = self.execute(K.NV_ReadPublic, (nv_index,))
        if nv_name(out["nvPublic"]) != out["nvName"]:
            raise ParseError("NV name does not match nvPublic", field="nvName")
        parsed = parse_nv_public(out["nvPublic"])
        if parsed["nvIndex"] != nv_index:
            raise ParseError("asked for index 0x%08x, got 0x%08x" % (nv_index, parsed["nvIndex"]),
                             field="nvPublic.nvIndex")
        self._names[nv_index] = out["nvName"]
        return {"public": out["nvPublic"], "name": out["nvName"], "parsed": parsed}

    def _nv_write(self, cmd, nv_index, params, auth, session, auth_handle):
        # the first write sets TPMA_NV_WRITTEN, which changes the index's Name: forget the cached one
        self.execute(cmd, (nv_index if auth_handle is None else auth_handle, nv_index), params,
                     [session] if session else (), [auth])
        self._names.pop(nv_index, None)

    def nv_increment(self, nv_index, auth=b"", session=None, auth_handle=None):
        """TPM2_NV_Increment of a TPM_NT_COUNTER index (Part 3 §31.8)."""
        self._nv_write(K.NV_Increment, nv_index, {}, auth, session, auth_handle)

    def nv_set_bits(self, nv_index, bits, auth=b"", session=None, auth_handle=None):
        """TPM2_NV_SetBits of a TPM_NT_BITS index (Part 3 §31.10): ORs `bits` in; bits never clear."""
        self._nv_write(K.NV_SetBits, nv_index, {"bits": bits}, auth, session, auth_handle)

    def nv_read(self, nv_index, size, offset=0, auth=b"", session=None, auth_handle=None):
        """TPM2_NV_Read (Part 3 §31.13) of `size` bytes at `offset`."""
        data = self.execute(K.NV_Read, (nv_index if auth_handle is None else auth_handle, nv_index),
                            {"size": size, "offset": offset}, [session] if session else (), [auth])["data"]
        if len(data) != size:
            raise ParseError("asked for %d NV bytes, got %d" % (size, len(data)), field="data")
        return data

    def nv_read_u64(self, nv_index, auth=b""):
        """A counter or bit field index as an integer (8 bytes, big-endian, Part 1 §37.2.4)."""
        return int.from_bytes(self.nv_read(nv_index, 8, 0, auth), "big")

    # --- attestation ---------------------------------------------------------------------------

    def quote(self, key_handle, qualifying_data, selection, scheme=None, session=None, auth=b""):
        """TPM2_Quote -> (TPMS_ATTEST bytes, signature dict). Parse the bytes with attest.py."""
        out = self.execute(K.Quote, (key_handle,),
                           {"qualifyingData": qualifying_data, "inScheme": scheme, "PCRselect": selection},
                           [session] if session else (), [auth])
        return out["quoted"], out["signature"]

    def policy_secret(self, session, auth_handle, auth=b"", auth_session=None, policy_ref=b""):
        """TPM2_PolicySecret (Part 3 §23.4): prove `auth_handle`'s authorization (`auth`, through
        `auth_session`, e.g. a salted HMAC session so the value never crosses the interface; a
        password session otherwise) into the policy `session`; no expiration."""
        self.execute(K.PolicySecret, (auth_handle, session.handle),
                     {"nonceTPM": session.nonce_tpm, "cpHashA": b"", "policyRef": policy_ref, "expiration": 0},
                     [auth_session] if auth_session else (), [auth])

    def policy_or(self, session, digests):
        """TPM2_PolicyOR (Part 3 §23.6) over the branch `digests`."""
        self.execute(K.PolicyOR, (session.handle,), {"pHashList": list(digests)})

    def activate_credential(self, activate_handle, key_handle, credential_blob, secret, key_session,
                            activate_auth=b""):
        """TPM2_ActivateCredential (Part 3 §12.5) -> the credential (certInfo) when `credential_blob`
        and `secret` were made for `key_handle`'s public key and `activate_handle`'s Name;
        `key_session` authorizes the EK (a policy session that satisfied its policy)."""
        return self.execute(K.ActivateCredential, (activate_handle, key_handle),
                            {"credentialBlob": credential_blob, "secret": secret},
                            [PasswordSession(), key_session], [activate_auth, b""])["certInfo"]

    def make_credential(self, handle, credential, object_name):
        """TPM2_MakeCredential (Part 3 §12.6) -> (credentialBlob, secret): the TPM's own
        computation, for cross-checks (provisioning computes it on the host)."""
        out = self.execute(K.MakeCredential, (handle,), {"credential": credential, "objectName": object_name})
        return out["credentialBlob"], out["secret"]

    # --- hierarchies ----------------------------------------------------------------------------

    def hierarchy_change_auth(self, hierarchy, new_auth, auth=b"", encrypt_session=None):
        """TPM2_HierarchyChangeAuth (Part 3 §24.8), authorized by the current `auth` in a
        password session. The TPM computes the response HMAC of an authorizing HMAC session with
        the new value, so the encryption of `new_auth` comes from `encrypt_session` (a salted
        session with TPMA_SESSION_DECRYPT) as an extra, non-authorizing session."""
        sessions = [PasswordSession()] + ([encrypt_session] if encrypt_session else [])
        self.execute(K.HierarchyChangeAuth, (hierarchy,), {"newAuth": new_auth}, sessions, [auth])

    def hierarchy_control(self, enable, state, auth_handle=C.TPM_RH_PLATFORM, auth=b"", session=None):
        """TPM2_HierarchyControl (Part 3 §24.2): switch hierarchy `enable` on (state True) or off
        until the next TPM2_Startup(CLEAR)."""
        self.execute(K.HierarchyControl, (auth_handle,), {"enable": enable, "state": 1 if state else 0},
                     [session] if session else (), [auth])

    def clear(self, auth_handle=C.TPM_RH_LOCKOUT, auth=b"", session=None):
        """TPM2_Clear (Part 3 §24.6)."""
        self.execute(K.Clear, (auth_handle,), sessions=[session] if session else (), auths=[auth])

    def evict_control(self, object_handle, persistent_handle, auth=b"", session=None):
        """TPM2_EvictControl (Part 3 §28.5) in the owner hierarchy."""
        self.execute(K.EvictControl, (C.TPM_RH_OWNER, object_handle),
                     {"persistentHandle": persistent_handle}, [session] if session else (), [auth])

    def startup_clear_flags(self):
        """TPMA_STARTUP_CLEAR (Part 2 §8.7) as an integer."""
        return self.properties(C.TPM_PT_STARTUP_CLEAR, 1)[C.TPM_PT_STARTUP_CLEAR]

    # --- dictionary attack ----------------------------------------------------------------------

    def dictionary_attack_parameters(self, max_tries, recovery_time, lockout_recovery,
                                     lockout_auth=b"", session=None):
        self.execute(K.DictionaryAttackParameters, (C.TPM_RH_LOCKOUT,),
                     {"newMaxTries": max_tries, "newRecoveryTime": recovery_time,
                      "lockoutRecovery": lockout_recovery},
                     [session] if session else (), [lockout_auth])

    def dictionary_attack_lock_reset(self, lockout_auth=b"", session=None):
        self.execute(K.DictionaryAttackLockReset, (C.TPM_RH_LOCKOUT,),
                     sessions=[session] if session else (), auths=[lockout_auth])


def _rp_hashes(cmd, rparams, sessions):
    # Part 1 §18.8 eq. 7: rpHash = H(responseCode || commandCode || parameters); responseCode is
    # always TPM_RC_SUCCESS here since errors carry no sessions.
    blob = Writer().u32(0).u32(cmd.cc).raw(rparams).bytes()
    return {s.hash_name: compat.digest(s.hash_name, blob) for s in sessions if isinstance(s, Session)}


def _crypt_first(param_bytes, fn):
    """Apply fn to the buffer of the first parameter (a TPM2B: its size stays in clear)."""
    r = Reader(param_bytes)
    data = r.tpm2b("parameter 1")
    return param_bytes[:2] + fn(data) + r.rest()


__all__ = ["Tpm", "TpmError", "SessionError", "AES128_CFB"]
