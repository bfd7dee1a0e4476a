"""Hardware-in-the-loop console tests.

``--target /dev/ttyUSB0`` (or a pyserial URL such as ``socket://host:port``, or the environment
variable ``PHONE_TARGET``) runs them against a real board's serial console; without a target they
boot an emulated device under QEMU and run against its serial port, so they never skip silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from host_tools.console import Console
from host_tools.qemu.device import Device, DeviceConfig

REPO = Path(__file__).resolve().parents[2]


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--target", default=None, metavar="PORT",
                         help="serial console of a real board (/dev/ttyUSB0, "
                              "socket://host:port); default: boot a QEMU device")
    except ValueError:
        pass  # already registered by the root conftest


def target_option(config: pytest.Config) -> str | None:
    # getoption with a default: the option is only registered when this conftest is an initial
    # conftest (pytest tests/hil ...); PHONE_TARGET works from any invocation.
    value = config.getoption("--target", default=None) or os.environ.get("PHONE_TARGET")
    return str(value) if value else None


@pytest.fixture(scope="session")
def hil_console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Console]:
    target = target_option(request.config)
    if target is not None:
        with Console.open(target) as con:
            con.wait_prompt(timeout=120)
            yield con
        return
    image = Path(os.environ.get("PHONE_IMAGE_DIR", REPO / "build" / "qemu-x86_64"))
    if not (image / "disk.img").is_file():
        pytest.fail(f"no image in {image} and no --target: run `make image` first")
    device = Device("hil", DeviceConfig(build_dir=image,
                                        devices_dir=tmp_path_factory.mktemp("devices")))
    with device.boot(timeout=300) as con:
        yield con
