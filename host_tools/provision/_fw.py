"""Typed views of the firmware functions provisioning and update use (firmware code carries no
annotations, for MicroPython; mypy --strict wants typed calls from host tools). The TPM client
itself is used as ``Any``: its methods return plain dicts and bytes."""

from __future__ import annotations

from typing import Any, Callable, cast

from firmware.secrets import flows as _flows
from firmware.secrets import release as _release
from firmware.secrets import rollback as _rollback
from firmware.secrets import store as _store
from firmware.tpm import client as _client
from firmware.tpm import policy as _policy
from firmware.tpm import public as _public
from firmware.tpm import transport_swtpm as _swtpm

TpmClient = Any
Tpm = cast(Callable[[Any], TpmClient], _client.Tpm)
SwtpmTransport = cast(Callable[..., Any], _swtpm.SwtpmTransport)
AES128_CFB = _client.AES128_CFB

pack = cast(Callable[[dict[str, Any]], bytes], _store.pack)
unpack = cast(Callable[[bytes], dict[str, Any]], _store.unpack)
validate = cast(Callable[[dict[str, Any]], dict[str, Any]], _store.validate)
pcr_hex = cast(Callable[[dict[int, bytes]], dict[str, str]], _store.pcr_hex)
POLICY_PCR: str = _store.POLICY_PCR
POLICY_AUTHORIZED: str = _store.POLICY_AUTHORIZED
STORE_FORMAT: int = _store.FORMAT

approved_policy = cast(Callable[..., bytes], _flows.approved_policy)
object_policy = cast(Callable[..., bytes], _flows.object_policy)
authorize_digest = cast(Callable[[bytes, bytes], bytes], _policy.authorize_digest)

rollback_public_area = cast(Callable[[int], bytes], _rollback.public_area)
rollback_written_name = cast(Callable[[int], bytes], _rollback.written_name)
ROLLBACK_ATTRIBUTES: int = _rollback.ATTRIBUTES
ROLLBACK_LEGACY_ATTRIBUTES: int = _rollback.BASE_ATTRIBUTES
ROLLBACK_INDEX: int = _rollback.DEFAULT_INDEX
rollback_commit = cast(Callable[..., None], _rollback.commit)

srk_template_ecc = cast(Callable[[], bytes], _public.srk_template_ecc)
ak_template_ecc = cast(Callable[[], bytes], _public.ak_template_ecc)
sealed_template = cast(Callable[[bytes], bytes], _public.sealed_template)
parse_public = cast(Callable[[bytes], dict[str, Any]], _public.parse_public)
object_name = cast(Callable[[bytes], bytes], _public.object_name)
ecc_verify_key_template = cast(Callable[[bytes, bytes], bytes], _public.ecc_verify_key_template)

release = cast(Callable[..., Any], _release.release)
