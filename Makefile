# Trusted phone firmware: build, boot, verify, test. See README.md.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BOARD ?= qemu-x86_64
DEVICE ?= phone1
export PYTHONPATH := $(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo image image-check qemu verify provision update tamper test test-unit test-micropython test-tpm bench typecheck fuzz clean

deps:
	@bash host_tools/deps.sh

# The main job, end to end: build the image, provision a device, start Kamailio + baresip on the
# host, boot the phone under QEMU + swtpm (measured boot on screen), verify its logs against the
# reference, place an SRTP call with a tone, power off. Leaves nothing running.
demo: image
	$(PY) -m host_tools.demo --device demo --no-build

# build/$(BOARD)/: GPT disk image (ESP with the UKI, signed phone bundle, data partition),
# reference.json (predicted PCRs), vendor-pubkey.pem. Reproducible: same inputs, same bytes.
image: deps
	$(PY) -m host_tools.image --board $(BOARD) --out build/$(BOARD)

# One boot of the built image: compares the PCRs it reads with reference.json.
image-check: image
	$(PY) -m host_tools.image.bootcheck build/$(BOARD)

# Boot DEVICE (state in build/devices/$(DEVICE)/: swtpm, OVMF vars, flash copy) under QEMU TCG with
# the console on this terminal (Ctrl-] powers it off cleanly). KVM=1 opts in to KVM.
qemu: image
	$(PY) -m host_tools.qemu --device $(DEVICE) --board $(BOARD) $(if $(KVM),--kvm) $(QEMU_ARGS)

# Boot DEVICE, fetch its logs and PCRs over the console, verify them against reference.json.
verify: image
	$(PY) -m host_tools.qemu.verify --device $(DEVICE) --board $(BOARD)

# Seal DEVICE's credentials to the predicted PCRs (docs/sealing.md). SECRETS=file.json PIN_FILE=pin
provision: image
	$(PY) -m host_tools.provision --device $(DEVICE) --board $(BOARD) $(if $(PIN_FILE),--pin-file $(PIN_FILE)) $(if $(SECRETS),--secrets $(SECRETS))

# Ship the current image to DEVICE with a vendor-signed PCR policy, keeping its sealed credentials.
update: image
	$(PY) -m host_tools.update --device $(DEVICE) --board $(BOARD) --flash

RESIGN ?= yes
# Tamper with a device's flash copy (build/devices/$(DEVICE)/disk.img, never build/$(BOARD)/):
# one byte of COMPONENT, re-signed with the development key; RESIGN=no leaves it stale. docs/tamper.md
tamper: deps
	@if [ -z "$(DEVICE)" ] || [ -z "$(COMPONENT)" ]; then \
	  echo "usage: make tamper DEVICE=NAME COMPONENT=NAME [RESIGN=no]" >&2; exit 2; fi
	$(PY) -m host_tools.tamper --device "$(DEVICE)" --board "$(BOARD)" --component "$(COMPONENT)" --resign "$(RESIGN)"

# Every test: pure unit tests (CPython and MicroPython), TPM tests on a real swtpm, system tests.
# Two workers (the CI machine's two cores): a test file runs whole on one worker (--dist loadfile),
# so its booted devices are shared as before; modules that need the phones' fixed SIP port 5061
# take turns through a lock (host_tools.siplab.port_lock). TEST_WORKERS=0: all in this process.
TEST_WORKERS ?= 2
# tests/hil runs after, in one process: its phone is one per session for all its files.
test: image
	$(PY) -m pytest -c tests/pytest.ini --rootdir=$(CURDIR) $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) --ignore=tests/hil tests
	$(PY) -m pytest -c tests/pytest.ini --rootdir=$(CURDIR) tests/hil
	$(VENV)/bin/micropython -X heapsize=64M tests/mpy_run.py
	$(PY) -m mypy --config-file tests/mypy.ini host_tools

test-unit: deps
	$(PY) -m pytest -c tests/pytest.ini --rootdir=$(CURDIR) tests/unit

test-micropython: deps
	$(VENV)/bin/micropython -X heapsize=64M tests/mpy_run.py

test-tpm: deps
	$(PY) -m pytest -c tests/pytest.ini --rootdir=$(CURDIR) tests/tpm

typecheck: deps
	$(PY) -m mypy --config-file tests/mypy.ini host_tools

# Coverage-guided fuzzing (atheris) of every parser, one target after the other, FUZZ_RUNS inputs
# each; prints inputs/s. A crash leaves its input in build/fuzz/<target>/crash-*. tests/fuzz/README.md
FUZZ_RUNS ?= 1000000
fuzz: deps
	$(PY) tests/fuzz/run.py -runs=$(FUZZ_RUNS) $(FUZZ_TARGETS)

# BOARD= picks the board of `bench boot` (each board against its own floor); BENCH=boot runs one
bench: deps
	BENCH_BOARD=$(BOARD) $(PY) -m bench $(BENCH)

clean:
	rm -rf build
