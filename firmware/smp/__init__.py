# MCUmgr Simple Management Protocol (SMP): the sans-I/O core the phone speaks on its serial console
# so stock MCUmgr clients (smpmgr, smpclient, mcumgr) flash it. Layers, each its own module:
#   cbor.py    RFC 8949 subset SMP payloads use (maps, text, bytes, ints, bools, arrays, null)
#   header.py  the 8-byte SMP header (op, version, flags, length, group, sequence, command)
#   serial.py  the SMP serial transport: base64 lines behind 06 09 / 04 14 with a CRC16 trailer,
#              sharing the line with the console's text
