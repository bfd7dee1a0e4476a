# The phone's media sockets (CPython): an even/odd UDP port pair for RTP and RTCP. Kept apart
# from io_cpython so the console can bind them (and report the port) without importing SIP.

import socket


def bind_media_pair(host, tries=100, port=None):
    """Two UDP sockets on an even port P (RTP) and P+1 (RTCP), RFC 3550 §11; `port` fixes P
    (a board whose NAT forwards fixed ports to the phone)."""
    if port is not None:
        if port % 2 or not 0 < port < 65535:
            raise ValueError("RTP port must be even and below 65535, got %r" % (port,))
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, port))
            rtcp.bind((host, port + 1))
        except BaseException:
            rtp.close()
            rtcp.close()
            raise
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp
    for _ in range(tries):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            if port % 2 or port >= 65535:
                rtp.close()
                continue
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
                rtp.close()
                continue
        except BaseException:
            rtp.close()
            raise
        rtp.setblocking(False)
        rtcp.setblocking(False)
        return rtp, rtcp
    raise OSError("no free even/odd UDP port pair on %s" % host)
