# SMP file management (group 8) on the phone: only a signed PCR policy, to /policy/<version>.json,
# chunks in order, handed to the broker once whole; the broker's refusal comes back as the SMP
# error and a "policy refused:" line. (The broker and TPM side: tests/tpm/test_broker_policy.py,
# with the stock smpclient.) Runs under pytest and micropython (tests/mpy_run.py).

from firmware import compat
from firmware.boot.broker import BrokerError
from firmware.smp import header as H
from firmware.smp.server import SmpServer
from firmware.update.policy_upload import PolicyFiles
from tests.unit.firmware.test_smp_core import _request


class MemSink:  # the staging file's interface (firmware.update.flash_dir.FileSink)
    def __init__(self):
        self.data = bytearray()

    def write(self, off, data):
        self.data = self.data[:off] + bytearray(data) + self.data[off + len(data):]

    def read(self, off, n):
        return bytes(self.data[off:off + n])

    def truncate(self, n):
        self.data = self.data[:n]


class Broker:
    def __init__(self, refuse=None):
        self.calls, self.refuse, self.sink = [], refuse, MemSink()

    def install(self, length, sha):
        self.calls.append((length, sha, bytes(self.sink.data)))
        if self.refuse:
            raise BrokerError("policy_install refused: " + self.refuse, 3, self.refuse)
        return {"image_version": "2.0.0", "anti_rollback": 2}


def _server(refuse=None):
    b = Broker(refuse)
    return SmpServer(None, None, files=PolicyFiles(lambda: b.sink, b.install)), b


def _up(s, off, data, name="/policy/2.0.0.json", length=None, version=1):
    body = {"off": off, "data": data, "name": name}
    if length is not None:
        body["len"] = length
    return _request(s, H.OP_WRITE, H.GROUP_FS, H.FS_FILE, body, version)


def test_chunks_in_order_then_the_broker_installs_it():
    s, b = _server()
    doc = b'{"policy": "file"}' * 10
    assert _up(s, 0, doc[:100], length=len(doc)) == {"off": 100}
    assert b.calls == []
    assert _up(s, 100, doc[100:]) == {"off": len(doc)}
    assert b.calls == [(len(doc), compat.sha256(doc).hex(), doc)]
    assert "policy: signed PCR policy for version 2.0.0 (anti-rollback 2) added to the sealed store" in s.events


def test_the_broker_refusal_is_the_answer_and_a_console_line():
    s, b = _server("policy signature does not verify with this device's policy key")
    assert _up(s, 0, b"{}", length=2) == {"err": {"group": 8, "rc": 1}}
    assert s.events[-1] == "policy refused: policy signature does not verify with this device's policy key"
    assert _up(s, 0, b"{}", length=2, version=0) == {
        "rc": 3, "rsn": "policy refused: policy signature does not verify with this device's policy key"}


def test_other_names_offsets_and_sizes_are_refused_before_the_broker():
    s, b = _server()
    for name in ("/etc/passwd", "/policy/../x.json", "/policy/.json", "/policy/a/b.json", "policy/2.json"):
        assert _up(s, 0, b"{}", name, 2) == {"err": {"group": 8, "rc": 2}}
        assert "this phone takes only /policy/<version>.json" in s.events[-1]
    assert _up(s, 0, b"{}", length=0) == {"err": {"group": 8, "rc": 10}}
    assert _up(s, 0, b"{}", length=16 * 1024 + 1) == {"err": {"group": 8, "rc": 10}}
    assert _up(s, 5, b"{}") == {"err": {"group": 8, "rc": 11}}  # no upload in progress
    assert _up(s, 0, b"{}", length=10) == {"off": 2}
    assert _up(s, 4, b"{}") == {"err": {"group": 8, "rc": 11}}  # a gap
    assert _up(s, 2, b"x" * 9) == {"err": {"group": 8, "rc": 10}}  # past the announced length
    assert b.calls == []


def test_without_files_group_8_is_not_supported():
    s = SmpServer(None, None)
    assert _up(s, 0, b"{}", length=2) == {"rc": 8, "rsn": "smp: group 8 command 0 (write) is not supported"}
