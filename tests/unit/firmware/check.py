# The few assertion helpers the firmware unit tests need, so the same test files run under pytest
# and under the `micropython` command (which has no pytest).


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail if it raised nothing or something else."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("expected %s from %s" % (exc_type.__name__, getattr(fn, "__name__", fn)))


def unhex(s):
    import binascii

    return binascii.unhexlify("".join(s.split()))


class Skipped(Exception):
    """Raised by skip() outside pytest; tests/mpy_run.py counts it as a skip with its reason."""


def skip(reason):
    """Skip the running test: pytest.skip under pytest, Skipped under tests/mpy_run.py. A test
    that cannot run here says so instead of returning early and counting as passed."""
    import sys

    if "pytest" in sys.modules:
        import pytest

        pytest.skip(reason)
    raise Skipped(reason)
