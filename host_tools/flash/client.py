"""A small SMP client on any pyserial port: one request, one answer, retried on a timeout with the
same sequence number (the device answers a resent chunk with the offset it wants, so a resend is
harmless). Console text arriving between SMP lines is kept: the device explains refusals there."""

from __future__ import annotations

import time
from typing import Any

import serial

from firmware.smp import header as H
from firmware.smp.errors import SmpError
from host_tools.flash._fw import Splitter, cbor_decode, cbor_encode, encode_lines, pack_header, parse_frame


class FlashError(Exception):
    """The device refused or the link failed; the message is the one line shown to the user."""


class Timeout(FlashError):
    pass


class SmpLink:
    def __init__(self, port: serial.SerialBase, timeout: float = 5.0, retries: int = 4,
                 line_length: int = 127) -> None:
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.line_length = line_length
        self.seq = 0
        self.split = Splitter()
        self.text: list[str] = []
        self.bytes_sent = 0

    @classmethod
    def open(cls, url: str, baudrate: int = 115200, **kw: Any) -> "SmpLink":
        try:
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, ValueError) as e:
            raise FlashError(f"cannot open {url}: {e}") from None
        return cls(port, **kw)

    def close(self) -> None:
        self.port.close()

    def request(self, op: int, group: int, command: int, body: dict[str, Any],
                version: int = H.V2) -> dict[str, Any]:
        payload = cbor_encode(body)
        self.seq = (self.seq + 1) & 0xFF
        want = (group, self.seq, command)
        lines = encode_lines(pack_header(op, version, len(payload), group, self.seq, command) + payload,
                             self.line_length)
        for _attempt in range(self.retries + 1):
            for line in lines:
                self.port.write(line)
                self.bytes_sent += len(line)
            answer = self._wait(want)
            if answer is not None:
                return answer
        raise Timeout(f"no answer to SMP group {group} command {command} after "
                      f"{self.retries + 1} tries of {self.timeout:.0f} s")

    def _wait(self, want: tuple[int, int, int]) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                # what is waiting, or block for one byte up to the port timeout: a fixed-size
                # read would sit out the whole timeout on every short answer
                data = self.port.read(self.port.in_waiting or 1)
            except serial.SerialException as e:
                raise FlashError(f"serial link failed: {e}") from None
            if not data:
                continue
            for kind, item in self.split.feed(data):
                if kind == "text":
                    line = item.decode("utf-8", "replace").strip()
                    if line:
                        self.text.append(line)
                    continue
                try:
                    rh, payload = parse_frame(item)
                    if (rh.group, rh.seq, rh.command) != want:
                        continue  # a late answer to an earlier try
                    body = cbor_decode(payload)
                except SmpError:
                    continue  # damaged answer: wait for the next or resend
                if not isinstance(body, dict):
                    continue
                return body
        return None
