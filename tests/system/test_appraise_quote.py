"""Issue 10 §2, §3, §7 on the real image: `make verify DEVICE=` on a provisioned (AK-enrolled)
phone takes the quote path (fresh nonce, the TPM's quote, appraisal against the vendor-signed
reference set) and says `verified`, with an HTML report that chromium renders; then the phone
is tampered (phone-app changed, bundle re-signed with the vendor key) and its console LIES: it
reports the golden boot's logs and PCR values. The log verifier believes it (exit 0: the attack
works on the old path); the quote path does not (exit 1, `failed`, naming the PCR digest or the
replay). The honest tampered phone is `unknown` naming phone-app. Two boots for the module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware.attest import evidence, pem
from host_tools.qemu import verify as qemu_verify
from tests.system.sealing_support import SealedDevice

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phone(built_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedDevice]:
    assert (built_image / "references.json").is_file() and (built_image / "references.sig").is_file()
    d = SealedDevice(built_image, tmp_path_factory.mktemp("appraise"), name="appraise")
    d.provision()
    yield d


class LyingConsole:
    """The tampered phone's console as an attacker who controls the phone's software makes it:
    it passes the quote command to the TPM (it cannot forge the AK's signature) but answers with
    the golden boot's logs and PCR values, and so do `log` and `pcrs`."""

    def __init__(self, con: Any, golden: dict[str, Any]) -> None:
        self.con, self.golden = con, golden

    def command(self, line: str, timeout: float = 60.0) -> str:
        answer = str(self.con.command(line, timeout=timeout))
        if line.startswith("quote "):
            ev = evidence.decode(answer.strip().encode())
            ev["logs"], ev["pcrs"] = self.golden["logs"], self.golden["pcrs"]
            return evidence.encode(ev).decode() + "\n"
        return answer

    def logs(self) -> dict[str, bytes]:
        return {k: pem.b64decode(v, k, evidence.MAX_LOG) for k, v in self.golden["logs"].items()}

    def pcrs(self, bank: str = "sha256") -> dict[str, dict[str, str]]:
        return {bank: dict(self.golden["pcrs"])}

    def status(self) -> Any:
        return self.con.status()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host_tools.verify", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_make_verify_takes_the_quote_path_and_says_verified(phone: SealedDevice, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    rc = qemu_verify.main(["--device", phone.name, "--image-dir", str(phone.image), "--devices-dir",
                           str(phone.devices), "--", "--html", str(page)])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert out.out.startswith("attestation of appraise: VERIFIED (image 0.1.0, board qemu-x86_64)"), out.out
    saved = phone.device.dir / "verify"
    nonce = (saved / "nonce.txt").read_text().strip()
    ev = evidence.decode((saved / "evidence.json").read_bytes().strip())
    assert ev["nonce"] == nonce and len(nonce) == 64
    # the saved evidence through the command line: the same verdict; another nonce: failed
    again = _cli("--quote", "--evidence", str(saved / "evidence.json"), "--nonce", nonce,
                 "--image-dir", str(phone.image))
    assert again.returncode == 0 and "VERIFIED" in again.stdout.splitlines()[0], again.stdout + again.stderr
    stale = _cli("--quote", "--evidence", str(saved / "evidence.json"), "--nonce", "00" * 32,
                 "--image-dir", str(phone.image))
    assert stale.returncode == 1 and "FAIL nonce" in stale.stdout
    # the report renders in chromium and shows the level and the components
    exe = shutil.which("chromium")
    assert exe is not None, "chromium is not installed (host_tools/deps.sh)"
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and ">VERIFIED</span>" in dom.stdout
    assert all(n in dom.stdout for n in ("phone-app", "sip-media", "device-config", "ca-bundle"))


def test_lying_console_of_a_tampered_phone_fails(phone: SealedDevice, tmp_path: Path) -> None:
    saved = phone.device.dir / "verify" / "evidence.json"
    assert saved.is_file(), "the golden boot's evidence (previous test) is needed"
    golden = evidence.decode(saved.read_bytes().strip())
    phone.tamper("--component", "phone-app")
    nonce = bytes(range(1, 33))
    with phone.booted() as con:
        honest = con.command("quote " + nonce.hex(), timeout=180).strip()
        liar = LyingConsole(con, golden)
        lie = liar.command("quote " + nonce.hex(), timeout=180).strip()
        old = qemu_verify.fetch_evidence(liar, tmp_path / "old")  # type: ignore[arg-type]
    # old path: the console's golden logs and PCRs pass the log verifier (the attack works there)
    ref = phone.image / "reference.json"
    res = subprocess.run(qemu_verify.verifier_command(old, ref, []), cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    # quote path: failed
    (tmp_path / "lie.json").write_text(lie)
    out = _cli("--quote", "--evidence", str(tmp_path / "lie.json"), "--nonce", nonce.hex(),
               "--image-dir", str(phone.image), "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    j = json.loads(out.stdout)
    assert j["level"] == "failed" and j["why"].startswith("PCR digest: pcrDigest "), j["why"]
    # a liar that keeps the true PCR values but the golden logs: the replay names PCR 14
    ev = evidence.decode(honest.encode())
    ev["logs"] = golden["logs"]
    (tmp_path / "lie2.json").write_bytes(evidence.encode(ev))
    out = _cli("--quote", "--evidence", str(tmp_path / "lie2.json"), "--nonce", nonce.hex(),
               "--image-dir", str(phone.image), "--json")
    j = json.loads(out.stdout)
    assert out.returncode == 1 and j["level"] == "failed" and j["differs"] == ["PCR 14"], j
    # the honest tampered phone: unknown, naming the component
    (tmp_path / "honest.json").write_text(honest)
    page = tmp_path / "tampered.html"
    out = _cli("--quote", "--evidence", str(tmp_path / "honest.json"), "--nonce", nonce.hex(),
               "--image-dir", str(phone.image), "--html", str(page))
    assert out.returncode == 1 and out.stdout.startswith("attestation: UNKNOWN"), out.stdout
    assert "differs: phone-app, PCR 14" in out.stdout
    assert '<span class="bad" id="differs">phone-app, PCR 14</span>' in page.read_text()
