# Typed exceptions shared by the firmware's sans-I/O cores.


class ParseError(ValueError):
    """Bytes from outside (a log, a TPM response, a packet) do not parse.

    `offset` is where in the input the problem is and `field` names what was being read there, so a
    user can find it in a hex dump.
    """

    def __init__(self, message, offset=None, field=None):
        self.offset = offset
        self.field = field
        where = ""
        if field is not None:
            where += " field " + str(field)
        if offset is not None:
            where += " at offset %d" % offset
        super().__init__(message + (" (" + where.strip() + ")" if where else ""))


class TransportError(OSError):
    """The channel to a peer (TPM, console, socket) failed; nothing was learned about the peer."""
