"""The phone's SMP server (firmware/smp, firmware/update) driven by the stock MCUmgr client
smpclient 7.3 (PyPI) over a pty, console text sharing the line: echo, parameters, image state,
upload with the vendor's checks before and after writing, resume, test/confirm, erase, refusals.
The oracle is smpclient's own encoding and its pydantic models of the answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from smp import error as smperr
from smp import image_management as smpimg
from smpclient import SMPClient
from smpclient.exceptions import SMPUploadError
from smpclient.generics import error, success
from smpclient.requests.image_management import ImageErase, ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import EchoWrite, MCUMgrParametersRead
from smpclient.transport.serial import SMPSerialTransport

from firmware.update import slots as S
from host_tools.image import bundle as B
from tests.interop.smp_device import PtyDevice

BOARD = "qemu-x86_64"


def _key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


VENDOR = _key()
OTHER = _key()


def _pem(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def make_bundle(version: str, counter: int, board: str = BOARD, key: Ed25519PrivateKey = VENDOR,
                size: int = 40000) -> bytes:
    comps = [B.Component("phone-app", version, bytes([counter & 0xFF]) * size),
             B.Component("config", version, json.dumps({"v": version}).encode())]
    man = B.manifest(board, version, counter, comps)
    return B.pack(man, B.sign(key, man), comps)


FACTORY = make_bundle("1.0.0", 1)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[PtyDevice]:
    d = PtyDevice(tmp_path, _pem(VENDOR), BOARD, floor=1, factory=FACTORY)
    d.slots.rec = S.initial("a", "1.0.0", 1, hashlib.sha256(FACTORY).digest())
    d.slots.save()
    yield d
    d.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _client(dev: PtyDevice) -> SMPClient:
    c = SMPClient(SMPSerialTransport(), dev.path)
    await c.connect()
    return c


async def _upload(dev: PtyDevice, image: bytes) -> list[int]:
    c = await _client(dev)
    try:
        return [off async for off in c.upload(image)]
    finally:
        await c.disconnect()


async def _request(dev: PtyDevice, req: Any) -> Any:
    c = await _client(dev)
    try:
        return await c.request(req)
    finally:
        await c.disconnect()


def test_echo_and_parameters_through_smpclient(device: PtyDevice) -> None:
    r = run(_request(device, EchoWrite(d="hello phone")))
    assert success(r) and r.r == "hello phone"
    p = run(_request(device, MCUMgrParametersRead()))
    assert success(p) and p.buf_size == 2048 and p.buf_count == 2


def test_state_read_shows_the_running_confirmed_image(device: PtyDevice) -> None:
    r = run(_request(device, ImageStatesRead()))
    assert success(r)
    assert len(r.images) == 1
    img = r.images[0]
    assert (img.slot, img.version, bytes(img.hash)) == (0, "1.0.0", hashlib.sha256(FACTORY).digest())
    assert img.active and img.confirmed and img.bootable and not img.pending


def test_upload_test_confirm_cycle(device: PtyDevice) -> None:
    new = make_bundle("1.1.0", 2)
    offsets = run(_upload(device, new))
    assert offsets[-1] == len(new)
    assert device.flash.read_bundle("b") == new
    r = run(_request(device, ImageStatesRead()))
    slot1 = [i for i in r.images if i.slot == 1][0]
    assert slot1.version == "1.1.0" and bytes(slot1.hash) == hashlib.sha256(new).digest()
    assert slot1.bootable and not slot1.pending
    r = run(_request(device, ImageStatesWrite(hash=hashlib.sha256(new).digest())))
    assert success(r)
    assert [i for i in r.images if i.slot == 1][0].pending
    # the loader's boot decision: trial of bank b, saved before booting
    bank, rec, note = S.choose(device.slots.rec)
    assert bank == "b" and rec["trial"] == "b" and "trial boot" in note
    device.slots.rec = rec
    r = run(_request(device, ImageStatesRead()))
    running = [i for i in r.images if i.slot == 0][0]
    assert running.version == "1.1.0" and running.active and not running.confirmed
    # the phone confirms (confirm without hash = the running image): the floor rises only now
    assert device.floor == 1
    r = run(_request(device, ImageStatesWrite(confirm=True)))
    assert success(r)
    assert device.floor == 2
    assert [i for i in r.images if i.slot == 0][0].confirmed


def test_unconfirmed_trial_reverts_on_the_next_boot(device: PtyDevice) -> None:
    new = make_bundle("1.1.0", 2)
    run(_upload(device, new))
    run(_request(device, ImageStatesWrite(hash=hashlib.sha256(new).digest())))
    bank, rec, _ = S.choose(device.slots.rec)
    assert bank == "b"
    bank, rec, note = S.choose(rec)  # rebooted without a confirm
    assert bank == "a" and rec["trial"] is None
    assert note == "reverted to bank a (version 1.0.0): trial image bank b (version 1.1.0) was never confirmed"
    assert rec["last"] == note


@pytest.mark.parametrize("case,image,rc,why", [
    ("other board", lambda: make_bundle("1.1.0", 2, board="qemu-aarch64"),
     smpimg.IMG_MGMT_ERR.INVALID_IMAGE_HEADER, "bundle is for board 'qemu-aarch64', this is 'qemu-x86_64'"),
    ("downgrade", lambda: make_bundle("0.9.0", 0),
     smpimg.IMG_MGMT_ERR.CURRENT_VERSION_IS_NEWER, "anti-rollback: bundle counter 0 is below this device's floor 1"),
    ("wrong vendor key", lambda: make_bundle("1.1.0", 2, key=OTHER),
     smpimg.IMG_MGMT_ERR.INVALID_IMAGE_HEADER, "manifest signature does not verify with the vendor key"),
    ("not a bundle", lambda: b"\x7fELF" + bytes(70000),
     smpimg.IMG_MGMT_ERR.INVALID_IMAGE_HEADER, "not a bundle"),
])
def test_refused_before_a_byte_is_written(device: PtyDevice, case: str, image: Any, rc: int,
                                          why: str) -> None:
    img = image()
    with pytest.raises(SMPUploadError) as ei:
        run(_upload(device, img))
    resp = ei.value.args[0]
    assert error(resp) and resp.err.group == 1 and resp.err.rc == rc, case
    assert device.flash.read_bundle("b") == b"", "bytes reached the slot before the checks"
    assert device.slots.rec["banks"]["b"]["state"] != S.BOOTABLE
    assert any(why in line for line in device.seen_events), device.seen_events


async def _upload_until(dev: PtyDevice, image: bytes, stop_at: int) -> int:
    c = await _client(dev)
    try:
        async for off in c.upload(image):
            if off >= stop_at:
                return off
    finally:
        await c.disconnect()
    raise AssertionError("upload finished before %d" % stop_at)


def test_broken_transfer_resumes_where_it_stopped(device: PtyDevice) -> None:
    new = make_bundle("1.1.0", 2, size=120000)
    stopped = run(_upload_until(device, new, 60000))
    frames_before = device.frames_in
    offsets = run(_upload(device, new))
    # the first answer of the new session already points past the data sent before
    assert offsets[0] == stopped and offsets[-1] == len(new)
    assert device.frames_in - frames_before < (len(new) - stopped) // 1000 + 5
    assert device.flash.read_bundle("b") == new
    assert any("resuming at byte %d" % stopped in e for e in device.seen_events)


def test_component_changed_under_a_valid_manifest_is_refused_after_writing(device: PtyDevice) -> None:
    good = make_bundle("1.1.0", 2)
    bad = bytearray(good)
    bad[good.index(b"\x02" * 40000) + 20000] ^= 0x01  # inside phone-app; manifest, signature intact
    with pytest.raises(SMPUploadError) as ei:
        run(_upload(device, bytes(bad)))
    resp = ei.value.args[0]
    assert error(resp) and resp.err.rc == smpimg.IMG_MGMT_ERR.INVALID_IMAGE_HEADER
    assert device.slots.rec["banks"]["b"]["state"] == S.WRITING  # never bootable
    assert "update refused: component 'phone-app': sha256 differs from the signed manifest" \
        in device.seen_events, device.seen_events
    r = run(_request(device, ImageStatesRead()))
    assert [i.slot for i in r.images] == [0]


def test_no_upload_while_the_running_image_is_on_trial(device: PtyDevice) -> None:
    new = make_bundle("1.1.0", 2)
    run(_upload(device, new))
    run(_request(device, ImageStatesWrite(hash=hashlib.sha256(new).digest())))
    _, device.slots.rec, _ = S.choose(device.slots.rec)
    with pytest.raises(SMPUploadError) as ei:
        run(_upload(device, make_bundle("1.2.0", 3)))
    assert ei.value.args[0].err.rc == smpimg.IMG_MGMT_ERR.NO_FREE_SLOT
    assert device.flash.read_bundle("a") == FACTORY  # the fallback is untouched


def test_erase_slot_one(device: PtyDevice) -> None:
    new = make_bundle("1.1.0", 2)
    run(_upload(device, new))
    r = run(_request(device, ImageErase(slot=1)))
    assert success(r)
    r = run(_request(device, ImageStatesRead()))
    assert [i.slot for i in r.images] == [0]
    assert device.flash.read_bundle("b") == b""
    r = run(_request(device, ImageErase(slot=0)))
    assert error(r) and r.err.rc == smpimg.IMG_MGMT_ERR.INVALID_SLOT


def test_unsupported_command_is_an_error_not_silence(device: PtyDevice) -> None:
    from smpclient.requests.os_management import DateTimeRead
    r = run(_request(device, DateTimeRead()))
    assert error(r) and r.rc == smperr.MGMT_ERR.ENOTSUP
    assert r.rsn == "smp: group 0 command 4 (read) is not supported"
