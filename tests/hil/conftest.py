"""Hardware-in-the-loop console tests: one phone for the whole session, three ways to reach it.

* ``--lg-env board/<board>/labgrid.yaml`` (labgrid's pytest plugin): the environment's
  ``PhoneStrategy`` takes the phone from off through firmware and stage loader to its prompt
  (``board/qemu-x86_64/labgrid.yaml``: QEMU + swtpm; a lab's board behind a coordinator with
  ``--lg-coordinator`` and a ``RemotePlace``); options of the environment name the reference,
  the PIN file, the SIP user;
* ``--target /dev/ttyUSB0`` (or a pyserial URL such as ``socket://host:port``, or the
  environment variable ``PHONE_TARGET``): a running board's serial console, no power control;
* neither: the QEMU phone of ``board/qemu-x86_64/labgrid.yaml`` booted through labgrid as with
  ``--lg-env`` (its state in a temporary directory), so the suite never skips silently.

``test_poweroff_last`` powers the phone off: it is moved to the end of the session.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pexpect
import pytest

from host_tools.console import Console

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ENV = REPO / "board" / "qemu-x86_64" / "labgrid.yaml"
LAB_DATA = REPO / "tests" / "data" / "lab"


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--target", default=None, metavar="PORT",
                         help="serial console of a real board (/dev/ttyUSB0, "
                              "socket://host:port); default: boot a QEMU device")
    except ValueError:
        pass  # already registered by the root conftest


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """The phone is shared by the session: the test that powers it off runs last."""
    last = [i for i in items if i.name == "test_poweroff_last"]
    for item in last:
        items.remove(item)
    items.extend(last)


def target_option(config: pytest.Config) -> str | None:
    # getoption with a default: the option is only registered when this conftest is an initial
    # conftest (pytest tests/hil ...); PHONE_TARGET works from any invocation.
    value = config.getoption("--target", default=None) or os.environ.get("PHONE_TARGET")
    return str(value) if value else None


def settle(con: Console, quiet: float = 2.0, limit: float = 30.0) -> None:
    """Wait until the line has been quiet for *quiet* seconds: the empty lines wait_prompt typed
    while a board was still booting each come back as one more prompt, which the first command
    would otherwise take for its answer."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            con.spawn.read_nonblocking(65536, timeout=quiet)
        except pexpect.TIMEOUT:
            return


def image_dir() -> Path:
    return Path(os.environ.get("PHONE_IMAGE_DIR", REPO / "build" / "qemu-x86_64"))


@dataclass
class Hil:
    """The phone under test. ``target`` is the labgrid target (None with ``--target``)."""

    target: Any = None
    direct: Console | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def console(self) -> Console:
        """The live console (the console driver's: it changes after a power cycle)."""
        if self.target is None:
            assert self.direct is not None
            return self.direct
        con: Console = self.target.get_driver("PhoneConsoleDriver").console
        return con

    @property
    def strategy(self) -> Any:
        return None if self.target is None else self.target.get_driver("PhoneStrategy")

    def driver(self, name: str) -> Any:
        """A driver of the target by class name, or None (no such driver, or no labgrid)."""
        if self.target is None:
            return None
        from labgrid.exceptions import NoDriverFoundError
        try:
            return self.target.get_driver(name, activate=False)
        except NoDriverFoundError:
            return None

    @property
    def reference(self) -> Path:
        env_dir = os.environ.get("PHONE_IMAGE_DIR")
        if env_dir or "reference" not in self.options:
            return image_dir() / "reference.json"
        return Path(self.options["reference"])

    @property
    def pin(self) -> str:
        return Path(self.options.get("pin_file", LAB_DATA / "pin")).read_text().strip()

    @property
    def secrets(self) -> dict[str, Any]:
        """The provisioning inputs when this suite provisioned the phone (QEMU), else {}."""
        res = self.options.get("secrets")
        return json.loads(Path(res).read_text()) if res else {}


def _option(cfg: Any, key: str) -> Any:
    try:
        return cfg.get_option(key)   # labgrid raises KeyError for an option the file lacks
    except KeyError:
        return None


def _options(env: Any) -> dict[str, Any]:
    cfg = env.config
    out: dict[str, Any] = {}
    for key in ("reference", "pin_file", "update_bundle"):
        value = _option(cfg, key)
        if value is not None:
            out[key] = cfg.resolve_path(value)
    for key in ("user_secret_length", "sip_user"):
        value = _option(cfg, key)
        if value is not None:
            out[key] = value
    return out


def _start(env: Any) -> Hil:
    target = env.get_target()
    hil = Hil(target=target, options=_options(env))
    from host_tools.lab import QemuPhone
    from labgrid.exceptions import NoResourceFoundError
    try:
        phone = target.get_resource(QemuPhone, wait_avail=False)
        if phone.secrets:
            hil.options["secrets"] = str(phone.path(phone.secrets))
    except NoResourceFoundError:
        pass
    hil.strategy.transition("prompt")
    return hil


@pytest.fixture(scope="session")
def hil(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Hil]:
    from labgrid.pytestplugin.hooks import LABGRID_ENV_KEY
    if request.config.stash.get(LABGRID_ENV_KEY, None) is not None:   # --lg-env or LG_ENV
        yield _start(request.getfixturevalue("env"))   # labgrid's fixture cleans up
        return
    target = target_option(request.config)
    if target is not None:
        with Console.open(target) as con:
            con.wait_prompt(timeout=120)
            settle(con)
            yield Hil(direct=con, options={"pin_file": str(LAB_DATA / "pin")})
        return
    if not (image_dir() / "disk.img").is_file():
        pytest.fail(f"no image in {image_dir()} and no --target: run `make image` first")
    from labgrid import Environment
    from host_tools.lab import QemuPhone
    env = Environment(str(DEFAULT_ENV))
    try:
        env.get_target().get_resource(QemuPhone, wait_avail=False).devices_dir = \
            str(tmp_path_factory.mktemp("devices"))
        yield _start(env)
    finally:
        env.cleanup()


@pytest.fixture
def hil_console(hil: Hil) -> Console:
    return hil.console
