"""`python -m host_tools.demo` (`make demo`), run as a newcomer runs it: a subprocess, checked on
its exit status and on what it printed. Real image build, QEMU (TCG) + OVMF + swtpm, Kamailio over
TLS, baresip.

* The whole main job succeeds: the stage loader's PCR 14 lines are shown, the verifier says OK,
  status shows unsealed + registered, the call is locked with an SRTP suite, baresip heard the
  phone's 1 kHz tone, the phone powered off, and every process the demo named is gone.
* A device whose phone-app was tampered with (re-signed, so it still boots) fails at the verify
  step with exit 1, naming the component, and leaves nothing running.

The image is built into a temp dir (the shared build/ stays untouched); the development keys are
build/keys (the image's CA bundle is the CA the demo issues Kamailio's certificate from).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from host_tools.siplab import HAVE_BARESIP, HAVE_KAMAILIO, IS_ROOT, port_free, port_lock
from tests.system.conftest import REPO

pytestmark = pytest.mark.slow

SIP_TLS_PORT = 5061
DEMO_TIMEOUT = 400


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not (HAVE_KAMAILIO and HAVE_BARESIP and IS_ROOT):
        pytest.skip("needs Debian kamailio + kamailio-tls-modules, openssl, baresip-core, and root")
    with port_lock(SIP_TLS_PORT):   # another worker's module may hold it: wait for it
        if not port_free(SIP_TLS_PORT):
            pytest.fail("127.0.0.1:%d is taken: the phone's signed device-config names it"
                        % SIP_TLS_PORT)
        yield tmp_path_factory.mktemp("demo")


def run_demo(lab: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # TMPDIR: the demo's lab directory (kept after a failure) stays inside the test's tmp dir
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(lab))
    proc = subprocess.run([sys.executable, "-m", "host_tools.demo", "--image-dir", str(lab / "img"),
                           "--devices-dir", str(lab / "devices"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT, check=False)
    print(proc.stdout[-6000:], proc.stderr[-2000:])
    return proc


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (its parent, the demo, has exited anyway)
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def started_pids(out: str) -> dict[str, int]:
    pids = {}
    for name in ("kamailio", "baresip", "qemu"):
        m = re.search(r"^%s pid (\d+)" % name, out, re.M)
        if m:
            pids[name] = int(m.group(1))
    return pids


def test_demo_builds_boots_verifies_and_calls(lab: Path) -> None:
    proc = run_demo(lab, "--device", "demo-ok")
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    for n in range(1, 8):
        assert "=== [%d/7] " % n in out
    assert "image: reference %s" % (lab / "img" / "reference.json") in out      # built here
    assert "provisioned demo-ok: sip-account sealed" in out
    # the boot's console, streamed: one PCR 14 event per component, then the separator
    for comp in ("phone-app", "sip-media", "device-config", "ca-bundle"):
        assert re.search(r"^  >> boot: \[.*\] measured %s \S+ into PCR 14: sha256 [0-9a-f]{64}$"
                         % comp, out, re.M), comp
    assert re.search(r"^  >> boot: .*PCR 14 closed with a separator", out, re.M)
    assert re.search(r"^prompt after \d+\.\d s$", out, re.M)
    # the verifier's own report, PCR 10 left out
    assert "  measured-boot verification: OK" in out
    assert "--pcr-list 0,1,2,3,4,5,6,7,8,9,11," in out
    assert re.search(r"^    ok +phone-app 0\.1\.0 ", out, re.M)
    assert '"unsealed": true' in out and '"registered": true' in out
    assert '"tls_verified": true' in out
    m = re.search(r"SRTP suite (\S+), security \"(\w+)\"", out)
    assert m and m.group(1) in ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80") and m.group(2) == "locked", out
    m = re.search(r"^baresip heard (\d+) Hz \(share ([0-9.]+)", out, re.M)
    assert m, out
    assert abs(int(m.group(1)) - 1000) <= 25 and float(m.group(2)) > 0.5
    assert "TPM shut down; powering off" in out and "QEMU exited with status 0" in out
    assert "measured-boot verification: OK\" (exit 0)" in out      # the summary
    assert out.rstrip().endswith("demo: OK")
    pids = started_pids(out)
    assert set(pids) == {"kamailio", "baresip", "qemu"}, pids
    assert not [name for name, pid in pids.items() if alive(pid)]


def test_demo_fails_at_verify_on_a_tampered_device_and_stops_everything(lab: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if not (lab / "img" / "disk.img").is_file():   # run on its own
        build = subprocess.run([sys.executable, "-m", "host_tools.image", "--out", str(lab / "img")],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                               check=False)
        assert build.returncode == 0, build.stderr
    tamper = subprocess.run([sys.executable, "-m", "host_tools.tamper", "--device", "demo-bad",
                             "--image-dir", str(lab / "img"), "--devices-dir", str(lab / "devices"),
                             "--create", "--component", "phone-app"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert tamper.returncode == 0, tamper.stdout + tamper.stderr
    # --keep: the tampered flash stays; the demo provisions against the vendor's reference
    proc = run_demo(lab, "--device", "demo-bad", "--keep", "--no-build")
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:]
    assert "  measured-boot verification: MISMATCH" in out
    assert re.search(r"^    differs +phone-app 0\.1\.0 ", out, re.M)
    assert re.search(r"^demo: FAILED at step 5/7 \(Verify the measured boot.*\): the verifier "
                     r"exited with status 1$", out, re.M), out[-2000:]
    assert "=== [6/7]" not in out and "demo: OK" not in out
    assert re.search(r"^demo: stopped qemu \(pid \d+\) and its swtpm, baresip \(pid \d+\), "
                     r"kamailio \(pid \d+\); logs kept in ", out, re.M), out[-1000:]
    pids = started_pids(out)
    assert set(pids) == {"kamailio", "baresip", "qemu"}, pids
    assert not [name for name, pid in pids.items() if alive(pid)]
