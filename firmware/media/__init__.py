# Media plane of the phone: RTP/RTCP packets, SRTP/SRTCP, G.711 and a jitter buffer. Every module
# here is sans-I/O (bytes in, bytes out, time passed in) and in the MicroPython-compatible subset.
