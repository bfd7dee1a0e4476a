# Code that runs on the device. Everything below is written in the MicroPython-compatible subset of
# Python: no typing/dataclasses/enum at runtime, no asserts on peer input, one I/O shim per runtime.
