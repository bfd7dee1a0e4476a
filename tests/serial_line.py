"""A serial line between a host tool and a device's console, for benchmarks and fault tests: a TCP
listener on 127.0.0.1 (the tool opens ``socket://127.0.0.1:PORT``) relayed byte for byte to the
device (QEMU's console socket ``socket://host:port``, or a pty path).

* ``baud``: each direction is paced at baud / 10 bytes per second (8N1: start + 8 data + stop
  bits), as a UART at that rate delivers them; None relays as fast as the sockets go.
* ``corrupt(n)``: flip one base64 character in each of the next ``n`` SMP continuation lines
  (they start ``04 14``: MCUmgr SMP serial transport) on their way to the device: the frame's
  CRC16 no longer matches, the device drops it, the client resends.
* ``to_device``: bytes relayed toward the device so far (a fault test kills QEMU past a count).

The relay is the test's; nothing in it is device or tool code.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time

SMP_CONTINUATION = b"\x04\x14"


class _Pace:
    def __init__(self, baud: int | None) -> None:
        self.rate = baud / 10.0 if baud else None
        self.t_next = 0.0

    def wait(self, n: int) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        self.t_next = max(self.t_next, now) + n / self.rate
        delay = self.t_next - now
        if delay > 0:
            time.sleep(delay)


class SerialLine:
    CHUNK = 64  # bytes moved per paced step (~5.6 ms at 115200)

    def __init__(self, device: str, baud: int | None = None) -> None:
        self.device = device
        self.baud = baud
        self.to_device = 0
        self.corrupted = 0
        self._corrupt = 0
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind(("127.0.0.1", 0))
        self._listen.listen(1)
        self.port = self._listen.getsockname()[1]
        self.url = "socket://127.0.0.1:%d" % self.port
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def corrupt(self, n: int = 1) -> None:
        self._corrupt += n

    def close(self) -> None:
        self._stop = True
        self._listen.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "SerialLine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- I/O ----------------------------------------------------------------------------------
    def _open_device(self) -> tuple[int, socket.socket | None]:
        if self.device.startswith("socket://"):
            host, port = self.device[len("socket://"):].rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s.fileno(), s
        return os.open(self.device, os.O_RDWR | os.O_NOCTTY), None

    def _serve(self) -> None:
        while not self._stop:
            try:
                r, _, _ = select.select([self._listen], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd, sock = self._open_device()
            try:
                self._relay(client, fd)
            finally:
                client.close()
                if sock is not None:
                    sock.close()
                else:
                    os.close(fd)

    def _relay(self, client: socket.socket, dev: int) -> None:
        up, down = _Pace(self.baud), _Pace(self.baud)
        pending = b""  # toward the device, kept until a whole line can be inspected
        while not self._stop:
            r, _, _ = select.select([client, dev], [], [], 0.1)
            if client in r:
                data = client.recv(4096)
                if not data:
                    return
                pending += data
                # whole lines only (an SMP line ends with \n): the corruption needs to see a line's start
                cut = pending.rfind(b"\n") + 1
                if cut == 0 and len(pending) < 512:
                    pass
                else:
                    cut = cut or len(pending)
                    out, pending = self._damage(pending[:cut]), pending[cut:]
                    for i in range(0, len(out), self.CHUNK):
                        piece = out[i:i + self.CHUNK]
                        up.wait(len(piece))
                        os.write(dev, piece)
                        self.to_device += len(piece)
            if dev in r:
                try:
                    data = os.read(dev, 4096)
                except OSError:
                    return
                if not data:
                    return
                for i in range(0, len(data), self.CHUNK):
                    piece = data[i:i + self.CHUNK]
                    down.wait(len(piece))
                    client.sendall(piece)

    def _damage(self, data: bytes) -> bytes:
        if not self._corrupt:
            return data
        out = bytearray(data)
        start = 0
        while self._corrupt:
            i = out.find(SMP_CONTINUATION, start)
            if i < 0 or i + 4 >= len(out):
                break
            j = i + 4  # a base64 character of the line's payload
            out[j] = ord("B") if out[j] != ord("B") else ord("C")
            self._corrupt -= 1
            self.corrupted += 1
            start = j
        return bytes(out)
