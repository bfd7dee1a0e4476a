# mypy: disable-error-code="no-untyped-call"
"""`python -m host_tools.verify --quote --evidence FILE --nonce HEX` on real swtpm evidence, with
the trust material in files as `make image` and provisioning leave them (references.json +
references.sig + vendor-pubkey.pem, device-ca.pem): exit 0 only for verified, 1 for every other
level naming the check or component, 2 for bad trust input; and the --html report rendered by
Debian's chromium (headless): it renders, names the level and the failing component, and a
passing device's report fits 1280x800 without scrolling."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.attest import evidence
from host_tools.image import references
from host_tools.provision import device_ca
from tests.tpm import attest_support as A
from tests.tpm.helpers import connect
from tests.tpm.test_secrets_support import reboot

REPO = Path(__file__).resolve().parents[2]
NONCE = bytes(range(100, 132))


class Files:
    def __init__(self, tmp: Path, tpm: Any) -> None:
        self.tmp = tmp
        self.ca = device_ca.load_or_create(tmp / "keys")
        self.vendor = A.Vendor(tmp)
        self.image_dir = tmp / "image"
        self.image_dir.mkdir()
        data, sig = self.vendor.signed_set([A.image()])
        (self.image_dir / "references.json").write_bytes(data)
        (self.image_dir / "references.sig").write_bytes(sig)
        (self.image_dir / "vendor-pubkey.pem").write_bytes(self.vendor.pubkey)
        self.device = A.Device(tpm, self.ca)

    def run(self, ev: dict[str, Any], nonce: bytes = NONCE, *extra: str) -> subprocess.CompletedProcess[str]:
        path = self.tmp / "evidence.json"
        path.write_bytes(evidence.encode(ev))
        return subprocess.run([sys.executable, "-m", "host_tools.verify", "--quote", "--evidence", str(path),
                               "--nonce", nonce.hex(), "--image-dir", str(self.image_dir),
                               "--device-ca", str(self.tmp / "keys" / device_ca.CERT_NAME), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def files(fresh_swtpm, tmp_path: Path) -> Iterator[Files]:  # type: ignore[no-untyped-def]
    tpm = connect(fresh_swtpm.uri)
    yield Files(tmp_path, tpm)
    tpm.transport.close()


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed (host_tools/deps.sh installs it)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", *args],
                          capture_output=True, text=True, timeout=120)


def _png_rows(path: Path) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what chromium writes) -> (w, h, rows, bpp)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, bpp


def test_cli_verified_then_tampered_and_lying(files: Files) -> None:
    golden = A.phone_log()
    files.device.boot(A.FIRMWARE_LOG, golden)
    ok = files.run(files.device.evidence(NONCE, A.FIRMWARE_LOG, golden))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("attestation: VERIFIED (image 0.1.0, board qemu-x86_64)")
    golden_pcrs = files.device.evidence(NONCE, A.FIRMWARE_LOG, golden)["pcrs"]
    # the same evidence for a nonce the verifier did not send: exit 1, the check named
    stale = files.run(files.device.evidence(NONCE, A.FIRMWARE_LOG, golden), bytes(32))
    assert stale.returncode == 1 and "FAIL nonce" in stale.stdout, stale.stdout
    # a tampered phone (re-signed bundle): honest evidence is unknown, names phone-app
    reboot(files.device.tpm)
    tampered = A.phone_log(changed={"phone-app": b"phone-app code, patched"})
    files.device.boot(A.FIRMWARE_LOG, tampered)
    honest = files.run(files.device.evidence(NONCE, A.FIRMWARE_LOG, tampered), NONCE, "--json")
    assert honest.returncode == 1
    j = json.loads(honest.stdout)
    assert j["level"] == "unknown" and j["differs"] == ["phone-app", "PCR 14"]
    # its console lies: golden log and golden PCR values with the TPM's real quote
    lie = files.device.evidence(NONCE, A.FIRMWARE_LOG, golden)
    lie["pcrs"] = golden_pcrs
    out = files.run(lie)
    assert out.returncode == 1 and out.stdout.startswith("attestation: FAILED"), out.stdout
    assert "FAIL PCR digest" in out.stdout
    # the old path believes the same lie: the console's (golden) logs and PCRs pass it
    (files.tmp / "fw.bin").write_bytes(A.FIRMWARE_LOG)
    (files.tmp / "ph.bin").write_bytes(golden)
    (files.tmp / "pcrs.json").write_text(json.dumps({"sha256": golden_pcrs}))
    ref = {"schema_version": 1, "board": A.BOARD, "image_version": "0.1.0",
           "components": [dict(c, pcr=14) for c in A.image()["components"]],
           "bundle": {"board": A.BOARD, "bundle_version": "0.1.0", "anti_rollback_counter": 1, "pcr": 14,
                      "sha256": A.image()["bundle_sha256"]},
           "pcrs": A.image()["pcrs"]}
    (files.tmp / "reference.json").write_text(json.dumps(ref))
    old = subprocess.run([sys.executable, "-m", "host_tools.verify", "--log", str(files.tmp / "fw.bin"),
                          "--log", str(files.tmp / "ph.bin"), "--pcrs", str(files.tmp / "pcrs.json"),
                          "--reference", str(files.tmp / "reference.json"), "--pcr-list",
                          "0,1,2,3,4,5,6,7,8,9,11,12,14"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert old.returncode == 0, old.stdout + old.stderr  # what the quote path exists for


def test_bad_trust_input_is_exit_2(files: Files) -> None:
    files.device.boot(A.FIRMWARE_LOG, A.phone_log())
    ev = files.device.evidence(NONCE, A.FIRMWARE_LOG, A.phone_log())
    ref = files.image_dir / "references.json"
    ref.write_bytes(ref.read_bytes().replace(b'"min_version": "0.1.0"', b'"min_version": "0.0.1"'))
    out = files.run(ev)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("verify: error: %s: references.json: signature does not verify with "
                                  "the vendor key" % ref), out.stderr
    out = subprocess.run([sys.executable, "-m", "host_tools.verify", "--quote", "--evidence", "x"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2


def test_html_report_in_chromium(files: Files) -> None:
    golden = A.phone_log()
    files.device.boot(A.FIRMWARE_LOG, golden)
    page = files.tmp / "ok.html"
    ok = files.run(files.device.evidence(NONCE, A.FIRMWARE_LOG, golden), NONCE, "--html", str(page))
    assert ok.returncode == 0, ok.stderr
    text = page.read_text()
    for external in ("http:", "https:", "<script", "<link", "src=", "@import", "url("):
        assert external not in text, external
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="level"' in dom.stdout and ">VERIFIED</span>" in dom.stdout
    for name in ("phone-app", "sip-media", "device-config", "ca-bundle", "quote signature", "PCR digest"):
        assert name in dom.stdout
    # a passing device's report fits a 1280x800 window: the last rows of the screenshot are
    # page background only (chromium sizes the shot to the window, not to the page)
    shot = files.tmp / "ok.png"
    r = _chromium("--screenshot=%s" % shot, "--window-size=1280,800", page.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    w, h, rows, bpp = _png_rows(shot)
    assert (w, h) == (1280, 800)
    white = b"\xff" * (w * bpp)
    assert all(row == white for row in rows[-40:]), "the report needs scrolling at 1280x800"
    assert any(row != white for row in rows[:200])  # and something was drawn
    # a tampered device: the failing component is named on the page
    reboot(files.device.tpm)
    tampered = A.phone_log(changed={"sip-media": b"sip and media code, patched"})
    files.device.boot(A.FIRMWARE_LOG, tampered)
    bad_page = files.tmp / "bad.html"
    bad = files.run(files.device.evidence(NONCE, A.FIRMWARE_LOG, tampered), NONCE, "--html", str(bad_page))
    assert bad.returncode == 1
    dom = _chromium("--dump-dom", bad_page.as_uri())
    assert dom.returncode == 0
    assert ">UNKNOWN</span>" in dom.stdout
    assert '<span class="bad" id="differs">sip-media, PCR 14</span>' in dom.stdout
    assert '<td class="bad">sip-media</td><td class="bad">differs</td>' in dom.stdout
