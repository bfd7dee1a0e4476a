# TPM 2.0 commands described as data (TPM 2.0 Part 3), and the one generic path that turns a
# description plus values into command bytes and response bytes back into values.
#
# Wire format (Part 1 §18): header tag(u16) size(u32) code(u32); handles; with sessions an
# authorizationSize(u32) and the TPMS_AUTH_COMMANDs; then parameters. Responses: tag, size,
# responseCode; handles; with sessions parameterSize(u32), parameters, TPMS_AUTH_RESPONSEs.

from firmware.errors import ParseError
from firmware.tpm import constants as C
from firmware.tpm import structures as S
from firmware.tpm.errors import TpmError
from firmware.tpm.marshal import Reader, Writer

HEADER_SIZE = 10
MAX_RESPONSE_SIZE = 8192  # larger than any response this client asks for (TPM_PT_MAX_RESPONSE_SIZE is 4096 on PC TPMs)


class Command:
    """One TPM command: spec name, command code, handle names (the first `auth_handles` need an
    authorization session), response handle names, and (name, type) lists of parameters."""

    def __init__(self, name, cc, handles=(), auth_handles=0, out_handles=(), params=(), response=()):
        self.name = name
        self.cc = cc
        self.handles = handles
        self.auth_handles = auth_handles
        self.out_handles = out_handles
        self.params = params
        self.response = response
        # Part 1 §21.1: only a first parameter that is a TPM2B can be encrypted.
        self.encrypts_command = bool(params) and getattr(params[0][1], "first_is_tpm2b", False)
        self.encrypts_response = bool(response) and getattr(response[0][1], "first_is_tpm2b", False)


# Part 3 §9.3
Startup = Command("TPM2_Startup", C.TPM_CC_Startup, params=(("startupType", S.U16),))
# Part 3 §9.4
Shutdown = Command("TPM2_Shutdown", C.TPM_CC_Shutdown, params=(("shutdownType", S.U16),))
# Part 3 §16.1
GetRandom = Command("TPM2_GetRandom", C.TPM_CC_GetRandom, params=(("bytesRequested", S.U16),),
                    response=(("randomBytes", S.TPM2B_DIGEST),))
# Part 3 §30.2
GetCapability = Command("TPM2_GetCapability", C.TPM_CC_GetCapability,
                        params=(("capability", S.U32), ("property", S.U32), ("propertyCount", S.U32)),
                        response=(("moreData", S.U8), ("capabilityData", S.CAPABILITY_DATA)))
# Part 3 §22.4
PCR_Read = Command("TPM2_PCR_Read", C.TPM_CC_PCR_Read, params=(("pcrSelectionIn", S.PCR_SELECTION),),
                   response=(("pcrUpdateCounter", S.U32), ("pcrSelectionOut", S.PCR_SELECTION),
                             ("pcrValues", S.DIGEST_LIST)))
# Part 3 §22.2
PCR_Extend = Command("TPM2_PCR_Extend", C.TPM_CC_PCR_Extend, handles=("pcrHandle",), auth_handles=1,
                     params=(("digests", S.DIGEST_VALUES),))
# Part 3 §24.1
CreatePrimary = Command("TPM2_CreatePrimary", C.TPM_CC_CreatePrimary, handles=("primaryHandle",),
                        auth_handles=1, out_handles=("objectHandle",),
                        params=(("inSensitive", S.TPM2B_SENSITIVE_CREATE), ("inPublic", S.TPM2B_PUBLIC),
                                ("outsideInfo", S.TPM2B_DATA), ("creationPCR", S.PCR_SELECTION)),
                        response=(("outPublic", S.TPM2B_PUBLIC), ("creationData", S.TPM2B_CREATION_DATA),
                                  ("creationHash", S.TPM2B_DIGEST), ("creationTicket", S.TICKET),
                                  ("name", S.TPM2B_NAME)))
# Part 3 §12.1
Create = Command("TPM2_Create", C.TPM_CC_Create, handles=("parentHandle",), auth_handles=1,
                 params=(("inSensitive", S.TPM2B_SENSITIVE_CREATE), ("inPublic", S.TPM2B_PUBLIC),
                         ("outsideInfo", S.TPM2B_DATA), ("creationPCR", S.PCR_SELECTION)),
                 response=(("outPrivate", S.TPM2B_PRIVATE), ("outPublic", S.TPM2B_PUBLIC),
                           ("creationData", S.TPM2B_CREATION_DATA), ("creationHash", S.TPM2B_DIGEST),
                           ("creationTicket", S.TICKET)))
# Part 3 §12.2
Load = Command("TPM2_Load", C.TPM_CC_Load, handles=("parentHandle",), auth_handles=1,
               out_handles=("objectHandle",),
               params=(("inPrivate", S.TPM2B_PRIVATE), ("inPublic", S.TPM2B_PUBLIC)),
               response=(("name", S.TPM2B_NAME),))
# Part 3 §12.4
ReadPublic = Command("TPM2_ReadPublic", C.TPM_CC_ReadPublic, handles=("objectHandle",),
                     response=(("outPublic", S.TPM2B_PUBLIC), ("name", S.TPM2B_NAME),
                               ("qualifiedName", S.TPM2B_NAME)))
# Part 3 §28.4: the handle to flush is a parameter, so it takes no authorization.
FlushContext = Command("TPM2_FlushContext", C.TPM_CC_FlushContext, params=(("flushHandle", S.U32),))
# Part 3 §11.1
StartAuthSession = Command("TPM2_StartAuthSession", C.TPM_CC_StartAuthSession, handles=("tpmKey", "bind"),
                           out_handles=("sessionHandle",),
                           params=(("nonceCaller", S.TPM2B_NONCE), ("encryptedSalt", S.TPM2B_ENCRYPTED_SECRET),
                                   ("sessionType", S.U8), ("symmetric", S.SYM_DEF), ("authHash", S.U16)),
                           response=(("nonceTPM", S.TPM2B_NONCE),))
# Part 3 §23.7
PolicyPCR = Command("TPM2_PolicyPCR", C.TPM_CC_PolicyPCR, handles=("policySession",),
                    params=(("pcrDigest", S.TPM2B_DIGEST), ("pcrs", S.PCR_SELECTION)))
# Part 3 §23.17
PolicyAuthValue = Command("TPM2_PolicyAuthValue", C.TPM_CC_PolicyAuthValue, handles=("policySession",))
# Part 3 §23.18
PolicyPassword = Command("TPM2_PolicyPassword", C.TPM_CC_PolicyPassword, handles=("policySession",))
# Part 3 §23.19
PolicyGetDigest = Command("TPM2_PolicyGetDigest", C.TPM_CC_PolicyGetDigest, handles=("policySession",),
                          response=(("policyDigest", S.TPM2B_DIGEST),))
# Part 3 §11.2
PolicyRestart = Command("TPM2_PolicyRestart", C.TPM_CC_PolicyRestart, handles=("sessionHandle",))
# Part 3 §12.7
Unseal = Command("TPM2_Unseal", C.TPM_CC_Unseal, handles=("itemHandle",), auth_handles=1,
                 response=(("outData", S.TPM2B_SENSITIVE_DATA),))
# Part 3 §18.4
Quote = Command("TPM2_Quote", C.TPM_CC_Quote, handles=("signHandle",), auth_handles=1,
                params=(("qualifyingData", S.TPM2B_DATA), ("inScheme", S.SCHEME), ("PCRselect", S.PCR_SELECTION)),
                response=(("quoted", S.TPM2B_ATTEST), ("signature", S.SIGNATURE)))
# Part 3 §25.2
DictionaryAttackLockReset = Command("TPM2_DictionaryAttackLockReset", C.TPM_CC_DictionaryAttackLockReset,
                                    handles=("lockHandle",), auth_handles=1)
# Part 3 §25.3
DictionaryAttackParameters = Command("TPM2_DictionaryAttackParameters", C.TPM_CC_DictionaryAttackParameters,
                                     handles=("lockHandle",), auth_handles=1,
                                     params=(("newMaxTries", S.U32), ("newRecoveryTime", S.U32),
                                             ("lockoutRecovery", S.U32)))

# Part 3 §24.2: enable is the hierarchy to switch (TPM_RH_ENDORSEMENT, _OWNER, _PLATFORM or
# _PLATFORM_NV), state YES/NO; authHandle is the platform (or the owner for its own and EH)
HierarchyControl = Command("TPM2_HierarchyControl", C.TPM_CC_HierarchyControl, handles=("authHandle",),
                           auth_handles=1, params=(("enable", S.U32), ("state", S.U8)))
# Part 3 §24.8: newAuth is the first parameter, so it can travel encrypted
HierarchyChangeAuth = Command("TPM2_HierarchyChangeAuth", C.TPM_CC_HierarchyChangeAuth,
                              handles=("authHandle",), auth_handles=1, params=(("newAuth", S.TPM2B_AUTH),))
# Part 3 §24.6
Clear = Command("TPM2_Clear", C.TPM_CC_Clear, handles=("authHandle",), auth_handles=1)

# Part 3 §28.5
EvictControl = Command("TPM2_EvictControl", C.TPM_CC_EvictControl, handles=("auth", "objectHandle"),
                       auth_handles=1, params=(("persistentHandle", S.U32),))

# Part 3 §31.3: the index's authValue is the first parameter, so it can travel encrypted.
NV_DefineSpace = Command("TPM2_NV_DefineSpace", C.TPM_CC_NV_DefineSpace, handles=("authHandle",),
                         auth_handles=1, params=(("auth", S.TPM2B_AUTH), ("publicInfo", S.TPM2B_NV_PUBLIC)))
# Part 3 §31.4
NV_UndefineSpace = Command("TPM2_NV_UndefineSpace", C.TPM_CC_NV_UndefineSpace,
                           handles=("authHandle", "nvIndex"), auth_handles=1)
# Part 3 §31.6
NV_ReadPublic = Command("TPM2_NV_ReadPublic", C.TPM_CC_NV_ReadPublic, handles=("nvIndex",),
                        response=(("nvPublic", S.TPM2B_NV_PUBLIC), ("nvName", S.TPM2B_NAME)))
# Part 3 §31.8
NV_Increment = Command("TPM2_NV_Increment", C.TPM_CC_NV_Increment, handles=("authHandle", "nvIndex"),
                       auth_handles=1)
# Part 3 §31.10
NV_SetBits = Command("TPM2_NV_SetBits", C.TPM_CC_NV_SetBits, handles=("authHandle", "nvIndex"),
                     auth_handles=1, params=(("bits", S.U64),))
# Part 3 §31.13
NV_Read = Command("TPM2_NV_Read", C.TPM_CC_NV_Read, handles=("authHandle", "nvIndex"), auth_handles=1,
                  params=(("size", S.U16), ("offset", S.U16)), response=(("data", S.TPM2B_MAX_NV_BUFFER),))
# Part 3 §23.9: authorized by the index (or its owner); the policy session is the third handle.
PolicyNV = Command("TPM2_PolicyNV", C.TPM_CC_PolicyNV, handles=("authHandle", "nvIndex", "policySession"),
                   auth_handles=1, params=(("operandB", S.TPM2B_OPERAND), ("offset", S.U16),
                                           ("operation", S.U16)))
# Part 3 §12.3
LoadExternal = Command("TPM2_LoadExternal", C.TPM_CC_LoadExternal, out_handles=("objectHandle",),
                       params=(("inPrivate", S.TPM2B_SENSITIVE), ("inPublic", S.TPM2B_PUBLIC),
                               ("hierarchy", S.U32)),
                       response=(("name", S.TPM2B_NAME),))
# Part 3 §20.1
VerifySignature = Command("TPM2_VerifySignature", C.TPM_CC_VerifySignature, handles=("keyHandle",),
                          params=(("digest", S.TPM2B_DIGEST), ("signature", S.SIGNATURE)),
                          response=(("validation", S.TICKET),))
# Part 3 §23.4: authHandle (an entity whose authorization is proven: here a hierarchy), the
# policy session is the second handle and takes no authorization itself.
PolicySecret = Command("TPM2_PolicySecret", C.TPM_CC_PolicySecret, handles=("authHandle", "policySession"),
                       auth_handles=1, params=(("nonceTPM", S.TPM2B_NONCE), ("cpHashA", S.TPM2B_DIGEST),
                                               ("policyRef", S.TPM2B_NONCE), ("expiration", S.U32)),
                       response=(("timeout", S.TPM2B_TIMEOUT), ("policyTicket", S.TICKET)))
# Part 3 §23.6: pHashList holds 2..8 branch digests, one of which is the session's digest now.
PolicyOR = Command("TPM2_PolicyOR", C.TPM_CC_PolicyOR, handles=("policySession",),
                   params=(("pHashList", S.DIGEST_LIST),))
# Part 3 §12.5: activateHandle (ADMIN role: the key the credential names), keyHandle (USER role:
# the EK, whose policy is PolicySecret(TPM_RH_ENDORSEMENT)); both are authorized.
ActivateCredential = Command("TPM2_ActivateCredential", C.TPM_CC_ActivateCredential,
                             handles=("activateHandle", "keyHandle"), auth_handles=2,
                             params=(("credentialBlob", S.TPM2B_ID_OBJECT),
                                     ("secret", S.TPM2B_ENCRYPTED_SECRET)),
                             response=(("certInfo", S.TPM2B_DIGEST),))
# Part 3 §12.6: the TPM as a calculator (no authorization); used by tests as an oracle.
MakeCredential = Command("TPM2_MakeCredential", C.TPM_CC_MakeCredential, handles=("handle",),
                         params=(("credential", S.TPM2B_DIGEST), ("objectName", S.TPM2B_NAME)),
                         response=(("credentialBlob", S.TPM2B_ID_OBJECT), ("secret", S.TPM2B_ENCRYPTED_SECRET)))
# Part 3 §23.16
PolicyAuthorize = Command("TPM2_PolicyAuthorize", C.TPM_CC_PolicyAuthorize, handles=("policySession",),
                          params=(("approvedPolicy", S.TPM2B_DIGEST), ("policyRef", S.TPM2B_NONCE),
                                  ("keySign", S.TPM2B_NAME), ("checkTicket", S.TICKET)))


def marshal_params(cmd, values):
    """Parameter area bytes for `cmd` from a dict of parameter values."""
    w = Writer()
    for name, typ in cmd.params:
        if name not in values:
            raise ValueError("%s: missing parameter %s" % (cmd.name, name))
        typ.write(w, values[name])
    return w.bytes()


def build_command(cmd, handles, param_bytes, auth_area=None):
    """Whole command: header, handles, optional authorization area, parameters."""
    if len(handles) != len(cmd.handles):
        raise ValueError("%s takes %d handles, got %d" % (cmd.name, len(cmd.handles), len(handles)))
    body = Writer()
    for h in handles:
        body.u32(h)
    if auth_area is not None:
        body.u32(len(auth_area)).raw(auth_area)
    body.raw(param_bytes)
    tag = C.TPM_ST_SESSIONS if auth_area is not None else C.TPM_ST_NO_SESSIONS
    return Writer().u16(tag).u32(HEADER_SIZE + len(body)).u32(cmd.cc).raw(body.bytes()).bytes()


def check_header(cmd, rsp):
    """Parse the response header; raise TpmError for a non-success code. Returns (tag, Reader
    positioned after the header)."""
    r = Reader(rsp)
    tag = r.u16("tag")
    size = r.u32("responseSize")
    if size != len(rsp):
        raise ParseError("responseSize %d but %d bytes received" % (size, len(rsp)), offset=2,
                         field="responseSize")
    rc = r.u32("responseCode")
    if rc != 0:
        # Part 1 §18.5: an error response is the header alone, tagged TPM_ST_NO_SESSIONS.
        r.done("error response")
        raise TpmError(rc, cmd.name)
    if tag not in (C.TPM_ST_NO_SESSIONS, C.TPM_ST_SESSIONS):
        raise ParseError("unexpected tag 0x%04x" % tag, offset=0, field="tag")
    return tag, r


def split_response(cmd, rsp, n_sessions):
    """Check a response and split it: (handles dict, parameter bytes, parameter offset, list of
    raw TPMS_AUTH_RESPONSE tuples). Raises TpmError or ParseError."""
    from firmware.tpm.session import parse_auth_response

    tag, r = check_header(cmd, rsp)
    want = C.TPM_ST_SESSIONS if n_sessions else C.TPM_ST_NO_SESSIONS
    if tag != want:
        raise ParseError("tag 0x%04x, expected 0x%04x" % (tag, want), offset=0, field="tag")
    handles = {}
    for name in cmd.out_handles:
        handles[name] = r.u32(name)
    if n_sessions:
        at = r.offset
        psize = r.u32("parameterSize")
        if psize > r.remaining():
            raise ParseError("parameterSize %d exceeds the %d bytes left" % (psize, r.remaining()),
                             offset=at, field="parameterSize")
        poff = r.offset
        params = r.raw(psize, "parameters")
        auths = [parse_auth_response(r, i) for i in range(n_sessions)]
    else:
        poff = r.offset
        params = r.rest()
        auths = []
    r.done("response")
    return handles, params, poff, auths


def unmarshal_params(cmd, param_bytes, offset=0):
    """Response parameters as a dict; trailing bytes are an error."""
    r = Reader(param_bytes, offset)
    out = {}
    for name, typ in cmd.response:
        out[name] = typ.read(r, name)
    r.done("parameters")
    return out


def parse_response(cmd, rsp):
    """Sessionless response -> dict of response handles and parameters (used by tests and for
    commands sent without sessions)."""
    handles, params, poff, _ = split_response(cmd, rsp, 0)
    out = unmarshal_params(cmd, params, poff)
    out.update(handles)
    return out
