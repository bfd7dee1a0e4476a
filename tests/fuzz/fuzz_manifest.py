"""The signed bundle's manifest.json (firmware/boot/manifest.py). Documented error: ParseError.
Seed: tests/fuzz/corpus/manifest/, the manifest of a bundle built by `make image`."""
import _common  # noqa: F401
import atheris
import bundle_seeds
import runner

with atheris.instrument_imports(include=["firmware"]):
    from firmware.boot import manifest
    from firmware.errors import ParseError


def one_input(data):
    manifest.parse(data)


if __name__ == "__main__":
    runner.main("manifest", one_input, (ParseError,), bundle_seeds.manifest_seeds)
