"""Property tests: whatever bytes a TPM (or something pretending to be one) answers, the response
parsers raise only ParseError or TpmError, never IndexError/struct errors or silent acceptance of
trailing bytes (issue 2 item 9)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.errors import ParseError
from firmware.tpm import commands as K
from firmware.tpm.attest import parse_attest
from firmware.tpm.errors import TpmError
from firmware.tpm.marshal import Writer
from firmware.tpm.public import object_name, parse_public, srk_template_ecc

COMMANDS = [K.GetRandom, K.GetCapability, K.PCR_Read, K.CreatePrimary, K.Create, K.Load,
            K.ReadPublic, K.StartAuthSession, K.PolicyGetDigest, K.Unseal, K.Quote]


def _response(tag: int, rc: int, body: bytes) -> bytes:
    return Writer().u16(tag).u32(10 + len(body)).u32(rc).raw(body).bytes()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(COMMANDS), st.sampled_from([0x8001, 0x8002, 0x00C4, 0x1234]),
       st.integers(0, 0xFFFFFFFF) | st.just(0), st.binary(max_size=300), st.integers(0, 3))
def test_responses_only_raise_typed_errors(cmd: K.Command, tag: int, rc: int, body: bytes,
                                           n_sessions: int) -> None:
    rsp = _response(tag, rc, body)
    try:
        K.split_response(cmd, rsp, n_sessions)
        K.parse_response(cmd, rsp)
    except (ParseError, TpmError):
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(COMMANDS), st.binary(max_size=300), st.integers(0, 300))
def test_truncated_and_garbage_bytes(cmd: K.Command, data: bytes, cut: int) -> None:
    for candidate in (data, _response(0x8001, 0, data)[:cut]):
        try:
            K.parse_response(cmd, candidate)
        except (ParseError, TpmError):
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_public_and_attest_parsers(data: bytes) -> None:
    for fn in (parse_public, parse_attest, object_name):
        try:
            fn(data)
        except ParseError:
            pass


@given(st.integers(0, 25))
def test_every_truncation_of_a_valid_public_area_is_named(cut: int) -> None:
    good = srk_template_ecc()
    try:
        parse_public(good[:cut])
    except ParseError as e:
        assert e.field is not None and e.offset is not None
    else:
        raise AssertionError("truncated TPMT_PUBLIC accepted")


def _valid_pcr_read() -> bytes:
    w = Writer().u32(7).u32(1).u16(0x000B).raw(bytes([3, 0xFF, 0, 0])).u32(8)
    for i in range(8):
        w.tpm2b(bytes([i]) * 32)
    return _response(0x8001, 0, w.bytes())


def _valid_read_public() -> bytes:
    pub = srk_template_ecc()
    name = object_name(pub)
    return _response(0x8001, 0, Writer().tpm2b(pub).tpm2b(name).tpm2b(name).bytes())


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([(K.PCR_Read, _valid_pcr_read()), (K.ReadPublic, _valid_read_public())]),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 400))
def test_mutated_valid_responses(case: tuple[K.Command, bytes], flips: list[tuple[int, int]],
                                 cut: int) -> None:
    cmd, good = case
    assert K.parse_response(cmd, good)
    data = bytearray(good)
    for pos, val in flips:
        data[pos % len(data)] = val
    for candidate in (bytes(data), bytes(data[:cut])):
        try:
            K.parse_response(cmd, candidate)
        except (ParseError, TpmError):
            pass
