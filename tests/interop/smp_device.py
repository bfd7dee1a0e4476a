"""A pty that speaks like the phone's serial console for SMP: the firmware's SMP server
(firmware.smp.server) behind a pty, with console text on the same line, so stock MCUmgr clients
(smpclient) can be pointed at the pty's path. The I/O shim here is the test's; everything it
calls is the device's code."""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from pathlib import Path

from firmware.boot import signature
from firmware.smp import serial as smpserial
from firmware.smp.server import SmpServer
from firmware.update import slots as S
from firmware.update.flash_dir import DirFlash
from firmware.update.local import LocalBackend
from firmware.update.upload import Upload


class PtyDevice:
    def __init__(self, root: Path, vendor_pem: bytes, board: str, floor: int,
                 capacity: int = 8 << 20, factory: bytes | None = None, files: object = None) -> None:
        self.flash = DirFlash(str(root), capacity)
        raw = signature.raw_public_key(vendor_pem)
        self.verify = signature.openssl_verifier(raw)
        self.board, self.floor = board, floor
        data = self.flash.load_state()
        rec = S.parse(data) if data else S.initial()
        if factory is not None and data is None:
            self.flash.sink("a").write(0, factory)
        self.slots = S.Slots(self.flash, rec)
        self.slots.save()
        self.server = SmpServer(LocalBackend(self.slots), self._new_upload, on_confirm=self._raise_floor,
                                files=files)
        self.text: list[bytes] = []
        self.seen_events: list[str] = []
        self.framing_errors = 0
        self.frames_in = 0
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _new_upload(self, sink: object, length: int, sha: bytes | None) -> Upload:
        return Upload(sink, length, sha, self.verify, self.board, self.floor, self.flash.capacity)

    def _raise_floor(self, counter: int) -> None:
        self.floor = max(self.floor, counter)

    def _run(self) -> None:
        split = smpserial.Splitter()
        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            items = split.feed(data)
            self.framing_errors += len(split.errors)
            self.seen_events.extend("smp: %s" % e for e in split.errors)
            del split.errors[:]
            for kind, item in items:
                if kind == "text":
                    self.text.append(item)
                    continue
                self.frames_in += 1
                answer = self.server.handle(item)
                # console text interleaved with the answer, as on the phone's shared line
                self.seen_events.extend(self.server.events)
                for line in self.server.events:
                    os.write(self.master, b"[update] " + line.encode() + b"\r\n")
                del self.server.events[:]
                if answer is not None:
                    for line in smpserial.encode(answer):
                        os.write(self.master, line)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)
