# The phone's side of the TPM broker (firmware/boot/broker.py): the console never opens the TPM;
# it asks the stage loader's root broker over the socket the loader handed it (PHONE_BROKER_FD).
# BrokeredHook offers what firmware.console.phone uses of firmware.secrets.hook.

import socket

from firmware.boot import broker

FD_ENV = "PHONE_BROKER_FD"


class BrokerChannel:
    def __init__(self, sock):
        self.sock = sock

    @classmethod
    def from_fd(cls, fd):
        return cls(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fd))

    def call(self, op, **fields):
        """The broker's answer (dict) to one request; BrokerError if refused or broken."""
        self.sock.send(broker.request(op, **fields))
        data = self.sock.recv(broker.MAX_ANSWER + 1)
        if not data:
            raise broker.BrokerError("the TPM broker closed the channel")
        return broker.parse_answer(data)


class BrokeredHook:
    """firmware.secrets.hook's console-facing functions, answered by the broker."""

    def __init__(self, channel):
        self.channel = channel
        self._status = {"unsealed": False, "state": "locked", "reason": "credentials not released yet"}
        self._sip = None

    def fetch(self):
        ans = self.channel.call("credentials")
        st = ans.get("status")
        self._status = st if isinstance(st, dict) else {"unsealed": False, "reason": "no status"}
        sip = ans.get("sip")
        self._sip = (sip[0], sip[1]) if isinstance(sip, list) and len(sip) == 2 else None

    def status_fields(self):
        return dict(self._status)

    def merge_status(self, status):
        from firmware.secrets import hook
        return hook.merge_status(status, self._status)

    def sip_account(self):
        return self._sip

    def unlock(self, pin):
        return self.channel.call("unlock", pin=pin.decode() if isinstance(pin, bytes) else pin)

    def forget(self):
        self._sip = None
