"""The bundle's ustar archive (firmware/boot/ustar.py). parse() raises ParseError; scan() never
raises and returns what parse() would (members, or members up to the error). Seed:
tests/fuzz/corpus/ustar/, the small members of a bundle built by `make image`."""
import _common  # noqa: F401
import atheris
import bundle_seeds
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.boot import ustar
    from firmware.errors import ParseError


def one_input(data):
    members, err = ustar.scan(data)
    assert err is None or isinstance(err, ParseError)
    try:
        assert ustar.parse(data) == members and err is None
    except ParseError:
        assert err is not None


if __name__ == "__main__":
    runner.main("ustar", one_input, (), bundle_seeds.ustar_seeds)
