#!/usr/bin/env bash
# Installs what building, booting and testing need on a Debian 12 machine: the Debian packages
# (as root, idempotent: apt-get runs only when something is missing) and a .venv with the pinned
# Python packages from host_tools/requirements.txt. Called by `make deps`.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build + boot the image
  python3 python3-venv ca-certificates make cpio gzip xz-utils zstd binutils
  qemu-system-x86 ovmf swtpm swtpm-tools busybox-static
  mtools dosfstools fdisk systemd-boot-efi systemd
  # the dm-verity system partition: squashfs, the static dm helper (gcc + libc.a)
  squashfs-tools libc6-dev
  # test oracles: TCG structures and event logs
  tpm2-tools osslsigncode
  # UEFI Secure Boot: sbverify cross-checks the signed UKI (osslsigncode signs it)
  sbsigntool
  # test oracle: dm-verity hash trees (veritysetup)
  cryptsetup-bin
  # test oracle: a real browser renders the --html attestation report (headless)
  chromium
  # real SIP peers for interop tests
  kamailio kamailio-tls-modules baresip-core
  # tpm2-pytss (benchmark oracle for the unseal) builds against these
  libtss2-dev python3-dev gcc pkg-config
  # board qemu-aarch64: QEMU virt, AAVMF, the cross compiler for its static dm-verity helper
  # (its kernel, userland and systemd-stub are arm64 .debs fetched with apt-get download)
  qemu-system-arm qemu-efi-aarch64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
)
# apt-get download PKG:arm64 needs arm64 in dpkg's foreign architectures and its package lists
foreign_arch_missing=0
case " $(dpkg --print-foreign-architectures | tr '\n' ' ') " in
  *" arm64 "*) ;;
  *) foreign_arch_missing=1 ;;
esac

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) || ((foreign_arch_missing)); then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]:-none}$( ((foreign_arch_missing)) && echo "; dpkg architecture arm64 not added"); run 'make deps' as root (or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ((foreign_arch_missing)); then
    echo "deps: dpkg --add-architecture arm64"
    dpkg --add-architecture arm64
  fi
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# The venv uses Debian's python3 (the same 3.11 that goes into the image).
PY=/usr/bin/python3
stamp=.venv/.requirements.sha256
want=$(sha256sum host_tools/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r host_tools/requirements.txt
  echo "$want" > "$stamp"
fi
echo "deps: ok"
