# Authorization sessions (TPM 2.0 Part 1 §19) and parameter encryption (Part 1 §21).
#
# A session object holds what both ends know (handle, nonces, session key, attributes, policy
# flags). The command engine in client.py asks it for the TPMS_AUTH_COMMAND of each command and
# hands it the TPMS_AUTH_RESPONSE to check; no I/O happens here.

from firmware import compat
from firmware.tcg_alg import HASH_ALG_NAMES
from firmware.tpm import constants as C
from firmware.tpm.kdf import kdfa
from firmware.tpm.marshal import Writer


class SessionError(ValueError):
    """The TPM's answer does not authenticate (bad response HMAC) or a session is misused."""


def trim_auth(auth_value):
    """Part 1 §19.6.4 (and §17.6.3.2): trailing zero octets of an authValue are not used in HMAC
    keys, so a PIN padded with zeros authorizes the same as the unpadded one."""
    auth_value = bytes(auth_value)
    end = len(auth_value)
    while end and auth_value[end - 1] == 0:
        end -= 1
    return auth_value[:end]


class PasswordSession:
    """The password authorization (TPM_RS_PW, Part 1 §19.8.5): the authValue travels in clear as
    the HMAC field. Use it only for empty auth values or over a trusted interface."""

    handle = C.TPM_RS_PW
    attributes = C.TPMA_SESSION_CONTINUESESSION
    is_policy = False

    def command_auth(self, cp_hashes, auth_value, include_auth, nonce_decrypt=b"", nonce_encrypt=b""):
        return _auth_command(self.handle, b"", self.attributes, auth_value)

    def check_response(self, rp_hashes, nonce_tpm, attributes, hmac, auth_value, include_auth):
        # Part 1 §19.8.5: the response to a password authorization has an empty nonce and hmac.
        if nonce_tpm or hmac:
            raise SessionError("password session response must carry an empty nonce and hmac")

    def can_encrypt(self):
        return False


def _auth_command(handle, nonce, attributes, hmac):
    # TPMS_AUTH_COMMAND (Part 2 §10.13.2)
    return Writer().u32(handle).tpm2b(nonce).u8(attributes).tpm2b(hmac).bytes()


class Session:
    """An HMAC or policy session started with TPM2_StartAuthSession (Part 3 §11.1).

    `session_key` is empty for unsalted, unbound sessions (Part 1 §19.6.8). `symmetric` is None or
    (TPM_ALG_AES, 128, TPM_ALG_CFB) for parameter encryption. `attributes` are TPMA_SESSION bits
    sent with each command (continueSession is always set by this client; set decrypt/encrypt to
    protect the first command/response parameter)."""

    def __init__(self, handle, session_type, hash_alg, nonce_caller, nonce_tpm, session_key,
                 symmetric=None, attributes=C.TPMA_SESSION_CONTINUESESSION):
        self.handle = handle
        self.session_type = session_type
        self.hash_alg = hash_alg
        self.hash_name = HASH_ALG_NAMES[hash_alg]
        self.nonce_caller = bytes(nonce_caller)
        self.nonce_tpm = bytes(nonce_tpm)
        self.session_key = bytes(session_key)
        self.symmetric = symmetric
        self.attributes = attributes | C.TPMA_SESSION_CONTINUESESSION
        self.is_policy = session_type in (C.TPM_SE_POLICY, C.TPM_SE_TRIAL)
        # Policy sessions only put the authValue in the HMAC after TPM2_PolicyAuthValue, and
        # send it in clear after TPM2_PolicyPassword (Part 3 §23.17, §23.18).
        self.auth_value_needed = False
        self.password_needed = False
        self.closed = False

    def include_auth(self):
        if self.is_policy:
            return self.auth_value_needed
        return True

    def can_encrypt(self):
        return self.symmetric is not None

    def _hmac_key(self, auth_value, include_auth):
        # Part 1 §19.6.9: HMAC key = sessionKey || authValue (authValue only when it applies).
        return self.session_key + (trim_auth(auth_value) if include_auth else b"")

    def command_auth(self, cp_hashes, auth_value, include_auth, nonce_decrypt=b"", nonce_encrypt=b""):
        """TPMS_AUTH_COMMAND for this command; `cp_hashes` maps hash name -> cpHash. The engine
        rolls a fresh nonceCaller before each command (Part 1 §19.6.2)."""
        if self.closed:
            raise SessionError("session 0x%08x is closed" % self.handle)
        if self.is_policy and self.password_needed:
            return _auth_command(self.handle, self.nonce_caller, self.attributes,
                                 trim_auth(auth_value))
        key = self._hmac_key(auth_value, include_auth and self.include_auth())
        # Part 1 §19.6.5 eq. 17: HMAC(key, cpHash || nonceNewer || nonceOlder || nonceDecrypt ||
        # nonceEncrypt || sessionAttributes)
        msg = (cp_hashes[self.hash_name] + self.nonce_caller + self.nonce_tpm + nonce_decrypt
               + nonce_encrypt + bytes([self.attributes]))
        return _auth_command(self.handle, self.nonce_caller, self.attributes,
                             compat.hmac(self.hash_name, key, msg))

    def check_response(self, rp_hashes, nonce_tpm, attributes, hmac, auth_value, include_auth):
        """Verify the TPMS_AUTH_RESPONSE HMAC (Part 1 §19.6.10 eq. 19) and take the new nonceTPM.
        Fails closed: a bad HMAC means the response may be forged, so its parameters are not used."""
        if len(nonce_tpm) < 16:
            raise SessionError("nonceTPM of %d bytes is too short" % len(nonce_tpm))
        if self.is_policy and self.password_needed:
            if hmac:
                raise SessionError("policy-password session response must have an empty hmac")
            self.nonce_tpm = bytes(nonce_tpm)
            return
        key = self._hmac_key(auth_value, include_auth and self.include_auth())
        msg = rp_hashes[self.hash_name] + nonce_tpm + self.nonce_caller + bytes([attributes])
        expected = compat.hmac(self.hash_name, key, msg)
        if not compat.constant_time_equal(expected, hmac):
            raise SessionError("response HMAC of session 0x%08x does not verify" % self.handle)
        self.nonce_tpm = bytes(nonce_tpm)
        if not attributes & C.TPMA_SESSION_CONTINUESESSION:
            self.closed = True

    # --- parameter encryption (Part 1 §21.4, AES in CFB mode) ---------------------------------

    def _cfb(self, auth_value, newer, older):
        alg, bits, mode = self.symmetric
        if alg != C.TPM_ALG_AES or mode != C.TPM_ALG_CFB:
            raise SessionError("only AES-CFB parameter encryption is implemented")
        # Part 1 §21.4 eq. 21: KDFa(hash, sessionKey || authValue, "CFB", nonceNewer, nonceOlder,
        # keyBits + blockBits): the key, then the IV.
        km = kdfa(self.hash_name, self.session_key + trim_auth(auth_value), "CFB", newer, older,
                  bits + 128)
        return compat.Aes(km[:bits // 8]), km[bits // 8:]

    def encrypt_command_param(self, data, auth_value):
        """Encrypt the first command parameter's buffer (decrypt attribute: the TPM decrypts)."""
        aes, iv = self._cfb(auth_value, self.nonce_caller, self.nonce_tpm)
        return aes.cfb_encrypt(iv, data)

    def decrypt_response_param(self, data, auth_value):
        """Decrypt the first response parameter's buffer (encrypt attribute); call after
        check_response so nonce_tpm is the TPM's new nonce."""
        aes, iv = self._cfb(auth_value, self.nonce_tpm, self.nonce_caller)
        return aes.cfb_decrypt(iv, data)


def session_key(hash_alg, salt, bind_auth, nonce_tpm, nonce_caller):
    """Part 1 §19.6.8 eq. 15: sessionKey = KDFa(authHash, bind.authValue || salt, "ATH",
    nonceTPM, nonceCaller, digest bits); empty when there is neither salt nor bind."""
    key = trim_auth(bind_auth) + bytes(salt)
    if not key:
        return b""
    name = HASH_ALG_NAMES[hash_alg]
    return kdfa(name, key, "ATH", nonce_tpm, nonce_caller, 8 * compat.digest_size(name))


def parse_auth_response(r, index):
    """TPMS_AUTH_RESPONSE (Part 2 §10.13.4) -> (nonce, attributes, hmac)."""
    f = "authResponse[%d]" % index
    nonce = r.tpm2b(f + ".nonce", 64)
    attrs = r.u8(f + ".sessionAttributes")
    hmac = r.tpm2b(f + ".hmac", 64)
    return nonce, attrs, hmac

