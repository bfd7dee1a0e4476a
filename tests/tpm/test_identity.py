# mypy: disable-error-code="no-untyped-call"
"""Device identity (issue 10 part 1) on real swtpm TPMs manufactured with EK certificates:
MakeCredential computed on the host (host_tools/provision/credential.py) cross-checked byte for
byte against tpm2_makecredential and functionally against the TPM's ActivateCredential, and the
enrollment's refusals: an EK certificate from an unknown CA, a credential made for another TPM's
EK, a wrong endorsement authorization -> no AK certificate."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from firmware.tpm import constants as C
from firmware.tpm.client import Tpm
from firmware.tpm.errors import TpmError
from firmware.tpm.kdf import kdfe
from firmware.tpm.transport_swtpm import SwtpmTransport
from host_tools.provision import credential, device_ca, identity, manufacturer
from host_tools.swtpm_proc import Swtpm

ECC_EK_CERT_INDEX = 0x01C00016
EMPTY_NAME = bytes.fromhex("000b") + bytes(32)


@dataclass
class Manufactured:
    sw: Swtpm
    tpm: Tpm
    eauth: bytes
    srk: dict[str, Any]

    def ek_cert(self, index: int = identity.EK_CERT_INDEX) -> x509.Certificate:
        return identity.ek_certificate(self.tpm, index)


def _start(state: Path, sock: Path) -> tuple[Swtpm, Tpm]:
    sw = Swtpm(state, sock, server=True, tcp=True, extra_args=["--flags", "not-need-init"])
    sw.start()
    assert sw.server_port is not None
    tpm = Tpm(SwtpmTransport("127.0.0.1", sw.server_port))
    tpm.startup(True)
    return sw, tpm


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two TPMs (a, b) from the project's manufacturer CA, one (rogue) from another CA; random
    endorsement authorizations as provisioning sets them; the device CA in the same keys dir."""
    root = tmp_path_factory.mktemp("identity")
    keys, other_keys = root / "keys", root / "other-keys"
    tpms: dict[str, Manufactured] = {}
    try:
        for name, k in (("a", keys), ("b", keys), ("rogue", other_keys)):
            manufacturer.manufacture(root / name, k)
            sw, tpm = _start(root / name, root / f"sock-{name}")
            eauth = secrets.token_bytes(32)
            tpm.hierarchy_change_auth(C.TPM_RH_ENDORSEMENT, eauth)
            srk = tpm.create_primary(C.TPM_RH_OWNER, public_srk())
            tpms[name] = Manufactured(sw, tpm, eauth, srk)
        roots, inter = manufacturer.known_cas(keys)
        yield {"tpms": tpms, "roots": roots, "inter": inter, "ca": device_ca.load_or_create(keys),
               "keys": keys, "root": root}
    finally:
        for m in tpms.values():
            try:
                m.tpm.transport.close()
            finally:
                m.sw.stop()


def public_srk() -> bytes:
    from firmware.tpm.public import srk_template_ecc
    out: bytes = srk_template_ecc()
    return out


def _enroll(lab: dict[str, Any], name: str, **kw: Any) -> dict[str, Any]:
    m = lab["tpms"][name]
    args: dict[str, Any] = {"endorsement_auth": m.eauth}
    args.update(kw)
    rec: dict[str, Any] = identity.enroll(m.tpm, "phone-" + name, m.srk["handle"], m.srk["parsed"], b"",
                                          ca=lab["ca"], roots=lab["roots"], intermediates=lab["inter"], **args)
    return rec


def test_manufactured_tpm_has_ek_certificates_from_the_project_ca_and_four_banks(lab: dict[str, Any]) -> None:
    m = lab["tpms"]["a"]
    for index in (identity.EK_CERT_INDEX, ECC_EK_CERT_INDEX):
        cert = m.ek_cert(index)
        chain = identity.verify_ek_chain(cert, lab["roots"], lab["inter"])
        assert len(chain) == 3 and chain[-1] == lab["roots"][0]
    # the certificate's key is the EK the TPM holds (RSA 2048, template L-1)
    ek = m.tpm.read_public(identity.EK_HANDLE)["parsed"]
    key = m.ek_cert().public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.public_numbers().n == int.from_bytes(ek["n"], "big")
    assert ek["authPolicy"].hex() == "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
    # swtpm_setup --create-ek-cert activates sha256 only by default: ours keeps every bank
    assert sorted(b for b, pcrs in m.tpm.pcr_banks().items() if pcrs) == ["sha1", "sha256", "sha384", "sha512"]
    # the openssl command line agrees with our chain check
    d = manufacturer.ca_workdir(lab["keys"]) / "localca"
    pem = lab["root"] / "ek.pem"
    pem.write_bytes(m.ek_cert().public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(d / manufacturer.ROOT_CERT), "-untrusted",
                          str(d / manufacturer.ISSUER_CERT), str(pem)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _activate(m: Manufactured, ek_handle: int, blob: bytes, secret: bytes, obj_handle: int) -> bytes:
    return identity.activate(m.tpm, obj_handle, ek_handle, blob, secret, m.eauth, m.srk["handle"],
                             m.srk["parsed"])


@pytest.mark.parametrize("ek_handle,cert_index", [(identity.EK_HANDLE, identity.EK_CERT_INDEX),
                                                  (0x81010016, ECC_EK_CERT_INDEX)],
                         ids=["rsa2048-L1", "ecc-p384-high-range"])
def test_host_make_credential_activates_on_the_tpm(lab: dict[str, Any], ek_handle: int, cert_index: int) -> None:
    """RSA 2048 EK (template L-1, policy PolicySecret(TPM_RH_ENDORSEMENT): RSA-OAEP seed) and
    swtpm's ECC P-384 EK (sha384, AES-256, PolicyOR(PolicyA, PolicyC): ECDH + KDFe seed)."""
    m = lab["tpms"]["a"]
    params = credential.ek_params(m.ek_cert(cert_index).public_key())
    ak = m.tpm.create(m.srk["handle"], public_ak())
    h = m.tpm.load(m.srk["handle"], ak["private"], ak["public"])
    try:
        name = m.tpm.name_of(h)
        secret_value = os.urandom(32)
        blob, secret = credential.make_credential(params, secret_value, name)
        assert _activate(m, ek_handle, blob, secret, h) == secret_value
        # bound to the Name: a credential for another object's Name is refused by the TPM
        blob2, secret2 = credential.make_credential(params, secret_value, EMPTY_NAME)
        with pytest.raises(TpmError) as e:
            _activate(m, ek_handle, blob2, secret2, h)
        assert e.value.name == "TPM_RC_INTEGRITY"
        # the TPM's own TPM2_MakeCredential (Part 3 §12.6) and ours are interchangeable
        tblob, tsecret = m.tpm.make_credential(ek_handle, secret_value, name)
        assert _activate(m, ek_handle, tblob, tsecret, h) == secret_value
        assert len(tblob) == len(blob) and len(tsecret) == len(secret)
    finally:
        m.tpm.flush_context(h)


def public_ak() -> bytes:
    from firmware.tpm.public import ak_template_ecc
    out: bytes = ak_template_ecc()
    return out


def _tpm2_makecredential(tmp: Path, key_pem: bytes, alg: str, value: bytes, name: bytes) -> tuple[bytes, bytes]:
    (tmp / "ek.pem").write_bytes(key_pem)
    (tmp / "secret.bin").write_bytes(value)
    subprocess.run(["tpm2_makecredential", "-T", "none", "-u", "ek.pem", "-G", alg, "-s", "secret.bin",
                    "-n", name.hex(), "-o", "cred.out"], cwd=tmp, check=True, capture_output=True)
    data = (tmp / "cred.out").read_bytes()
    assert data[:8] == bytes.fromhex("badcc0de00000001")  # tpm2-tools' credential file header
    n = int.from_bytes(data[8:10], "big")
    blob = data[10:10 + n]
    m = int.from_bytes(data[10 + n:12 + n], "big")
    secret = data[12 + n:12 + n + m]
    assert len(data) == 12 + n + m
    return blob, secret


def test_credential_blob_equals_tpm2_makecredential_byte_for_byte(tmp_path: Path) -> None:
    """tpm2_makecredential with a software EK whose private key we hold: recover its seed, then
    our credential_blob for that seed must be the very same bytes (RSA: OAEP "IDENTITY"; ECC:
    ECDH + KDFe "IDENTITY")."""
    name = bytes.fromhex("000b") + os.urandom(32)
    value = os.urandom(32)
    rkey = rsa.generate_private_key(65537, 2048)
    pem = rkey.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    blob, secret = _tpm2_makecredential(tmp_path, pem, "rsa", value, name)
    seed = rkey.decrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                             label=b"IDENTITY\0"))
    assert credential.credential_blob("sha256", 128, seed, value, name) == blob
    # and our seed encryption is what a TPM-side OAEP decryption expects
    p = credential.ek_params(rkey.public_key())
    seed2, secret2 = credential.make_seed(p)
    assert rkey.decrypt(secret2, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                              label=b"IDENTITY\0")) == seed2

    ekey = ec.generate_private_key(ec.SECP256R1())
    pem = ekey.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    blob, secret = _tpm2_makecredential(tmp_path, pem, "ecc", value, name)
    xl = int.from_bytes(secret[:2], "big")
    ex = secret[2:2 + xl]
    ey = secret[4 + xl:]
    eph = ec.EllipticCurvePublicNumbers(int.from_bytes(ex, "big"), int.from_bytes(ey, "big"), ec.SECP256R1()).public_key()
    z = ekey.exchange(ec.ECDH(), eph)
    ekx = ekey.public_key().public_numbers().x.to_bytes(32, "big")
    seed = kdfe("sha256", z, "IDENTITY", ex, ekx, 256)
    assert credential.credential_blob("sha256", 128, seed, value, name) == blob


def test_enrollment_issues_an_ak_certificate_after_activation(lab: dict[str, Any]) -> None:
    m = lab["tpms"]["a"]
    rec = _enroll(lab, "a")
    assert rec["ak_handle"] == identity.AK_HANDLE
    cert = x509.load_pem_x509_certificate(rec["ak_cert"].encode())
    ca = lab["ca"].cert
    cert.verify_directly_issued_by(ca)
    assert rec["device_ca"] == lab["ca"].pem
    ak = m.tpm.read_public(identity.AK_HANDLE)
    assert ak["name"].hex() == rec["ak_name"]
    attrs = ak["parsed"]["objectAttributes"]
    want = (C.TPMA_OBJECT_FIXEDTPM | C.TPMA_OBJECT_FIXEDPARENT | C.TPMA_OBJECT_SENSITIVEDATAORIGIN
            | C.TPMA_OBJECT_USERWITHAUTH | C.TPMA_OBJECT_RESTRICTED | C.TPMA_OBJECT_SIGN_ENCRYPT)
    assert attrs == want
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.public_numbers().x == int.from_bytes(ak["parsed"]["x"], "big")
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "phone-a"
    assert m.eauth.hex() not in repr(rec) and m.eauth.hex() not in rec["ak_cert"]


def test_ek_certificate_from_an_unknown_ca_gets_no_ak_certificate(lab: dict[str, Any]) -> None:
    rogue = lab["tpms"]["rogue"]
    before = rogue.tpm.get_capability(C.TPM_CAP_HANDLES, C.TPM_HT_PERSISTENT << 24, 64)[1]
    with pytest.raises(identity.IdentityError) as e:
        _enroll(lab, "rogue")
    assert "does not chain to a known TPM manufacturer CA" in str(e.value)
    assert "no AK certificate" in str(e.value)
    # refused before anything was created in the TPM
    assert rogue.tpm.get_capability(C.TPM_CAP_HANDLES, C.TPM_HT_PERSISTENT << 24, 64)[1] == before
    # control: the same TPM enrolls when its manufacturer is known (the test setup can succeed)
    roots, inter = manufacturer.known_cas(lab["root"] / "other-keys")
    rec = identity.enroll(rogue.tpm, "phone-rogue", rogue.srk["handle"], rogue.srk["parsed"], b"", rogue.eauth,
                          lab["ca"], roots, inter)
    assert "BEGIN CERTIFICATE" in rec["ak_cert"]


def test_credential_for_another_tpms_ek_fails_activation_and_gets_no_ak_certificate(lab: dict[str, Any]) -> None:
    """TPM a presents TPM b's genuine EK certificate (it chains to the known CA): the credential
    is made for b's EK, which a cannot decrypt; ActivateCredential fails, nothing is issued."""
    b_cert = lab["tpms"]["b"].ek_cert()
    with pytest.raises(identity.IdentityError) as e:
        _enroll(lab, "a", ek_cert=b_cert)
    msg = str(e.value)
    assert msg.startswith("TPM2_ActivateCredential failed (") and "TPM_RC_" in msg
    assert "no AK certificate" in msg
    assert lab["tpms"]["a"].eauth.hex() not in msg
    # control: b's certificate on b itself enrolls
    assert "BEGIN CERTIFICATE" in _enroll(lab, "b", ek_cert=b_cert)["ak_cert"]


def test_wrong_endorsement_authorization_gets_no_ak_certificate(lab: dict[str, Any]) -> None:
    wrong = secrets.token_bytes(32)
    with pytest.raises(identity.IdentityError) as e:
        _enroll(lab, "a", endorsement_auth=wrong)
    assert "TPM_RC_BAD_AUTH" in str(e.value) and "endorsement authorization" in str(e.value)
    assert wrong.hex() not in str(e.value)


# --- the provisioning command line ------------------------------------------------------------

from tests.tpm.test_provision import Env, _provision, _store, env  # noqa: E402,F401  (the fixture)


def test_provision_enrolls_the_ak_and_refuses_a_tpm_from_an_unknown_manufacturer(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from firmware.errors import ParseError
    from firmware.secrets import store
    from host_tools.provision import disk
    # attack: the device's TPM was made by a manufacturer we do not know
    manufacturer.manufacture(env.device / "tpm", tmp_path / "rogue-keys")
    assert _provision(env) == 2
    err = capsys.readouterr().err
    assert "does not chain to a known TPM manufacturer CA" in err and "no AK certificate" in err
    with pytest.raises(ParseError):
        store.unpack(disk.read_partition(env.device / "disk.img"))  # nothing was written
    # a garbage --manufacturer-ca is a clear error; the rogue manufacturer's root, given
    # explicitly, is accepted (the control: this TPM enrolls once its maker is known)
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert _provision(env, "--manufacturer-ca", str(tmp_path / "junk.pem")) == 2
    assert "--manufacturer-ca" in capsys.readouterr().err
    rogue = manufacturer.ca_workdir(tmp_path / "rogue-keys") / "localca"
    bundle = tmp_path / "rogue-manufacturer.pem"
    bundle.write_bytes((rogue / manufacturer.ROOT_CERT).read_bytes() + (rogue / manufacturer.ISSUER_CERT).read_bytes())
    assert _provision(env, "--manufacturer-ca", str(bundle)) == 0
    assert _store(env)["attestation"]["ak_handle"] == identity.AK_HANDLE
    # the same device without attestation still provisions (sealing only)
    assert _provision(env, "--no-attestation") == 0
    assert "attestation" not in _store(env)
    # a TPM from the project's manufacturer: enrolled, certificate from build/keys/device-ca.pem
    import shutil
    shutil.rmtree(env.device / "tpm")
    (env.device / "provisioning-record.json").unlink()
    assert _provision(env) == 0
    out = capsys.readouterr().out
    assert "attestation key 0x81020000 certified by the device CA" in out
    rec = _store(env)["attestation"]
    from host_tools.qemu.device import KEYS_DIR
    ca = x509.load_pem_x509_certificate((KEYS_DIR / device_ca.CERT_NAME).read_bytes())
    x509.load_pem_x509_certificate(rec["ak_cert"].encode()).verify_directly_issued_by(ca)
    flash = (env.device / "disk.img").read_bytes()
    from host_tools.provision import hierarchy
    auth = hierarchy.read_record(env.device / "provisioning-record.json")
    assert auth is not None
    for v in (auth.endorsement, auth.owner, auth.lockout):
        assert v not in flash and v.hex().encode() not in flash and v.hex() not in out + err
