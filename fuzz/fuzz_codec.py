"""Deep fuzzer for the SMPP codec, the sans-IO session and the content stage (atheris).

One input is ``[mode][4 parameter octets][byte stream]``; the stream is what an ESME
sends, and ``mode % 3`` picks the target: 0 the codec, 1 the sans-IO session with a
scripted application, 2 the content stage (UDH, SAR, reassembly, decoding, macros,
flood rules). The targets and their invariants are ``fuzz_one`` and its helpers in
``tests/security/harness.py``, shared with the hypothesis tests.

Every invariant violation is an ``AssertionError``; any other exception is a bug too.
A crash is saved by libFuzzer as ``crash-<sha1>``: turn it into a regression test in
``tests/security/test_fuzz.py`` (``REGRESSIONS``).

Usage (from the repository root)::

    .venv/bin/python fuzz/fuzz_codec.py --make-corpus fuzz/corpus
    .venv/bin/python fuzz/fuzz_codec.py fuzz/corpus -max_total_time=600 -max_len=4096 \\
        -artifact_prefix=fuzz/artifacts/

``--minutes N [DIR]`` is the long run: it seeds ``DIR`` (default ``fuzz/corpus``) and
runs libFuzzer for N minutes, restarting it after each crash so one bug does not end
the run; crashes land in ``DIR/../artifacts/`` and are listed at the end (exit status 1
when there are any). ``--replay FILE...`` runs saved inputs once without libFuzzer (a
crash reproduces as an ordinary traceback).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import atheris  # type: ignore[import-untyped]
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["smppbridge", "tests.security"]):
    from smppbridge.smpp import pdu as P
    from smppbridge.smpp.codec import encode
    from smppbridge.smpp.constants import EsmClass, Tag
    from smppbridge.text.concat import concat_udh
    from tests.security.harness import fuzz_one


def _seed_pdus() -> list[list[P.Pdu]]:
    """Streams of valid PDUs to start from (the fuzzer mutates them)."""
    bind = P.BindTransceiver(sequence_number=1, system_id="demo",
                             password="demo")  # noqa: S106 - a seed, not a credential
    sm = P.SubmitSm(sequence_number=2, source_addr="12345", destination_addr="79000000001",
                    short_message=b"hello", registered_delivery=1)
    parts = [sm.with_(sequence_number=3 + i, esm_class=EsmClass.UDHI,
                      short_message=concat_udh(7, 2, i + 1) + b"part") for i in range(2)]
    sar = sm.with_(sequence_number=6, tlvs=(P.Tlv(Tag.SAR_MSG_REF_NUM, b"\0\x09"),
                                            P.Tlv(Tag.SAR_TOTAL_SEGMENTS, b"\x01"),
                                            P.Tlv(Tag.SAR_SEGMENT_SEQNUM, b"\x01")))
    payload = sm.with_(sequence_number=7, short_message=b"",
                       tlvs=(P.Tlv(Tag.MESSAGE_PAYLOAD, b"x" * 300),))
    multi = P.SubmitMulti(sequence_number=8, source_addr="1", short_message=b"hi",
                          dest_addresses=(P.DestAddress(1, 1, 1, "380501234567"),
                                          P.DestAddress(2, dl_name="list")))
    data_sm = P.DataSm(sequence_number=9, source_addr="1", destination_addr="2",
                       tlvs=(P.Tlv(Tag.MESSAGE_PAYLOAD, b"data"),))
    other = [P.EnquireLink(sequence_number=10), P.QuerySm(sequence_number=11, message_id="1"),
             P.CancelSm(sequence_number=12, message_id="1"),
             P.ReplaceSm(sequence_number=13, message_id="1", short_message=b"r"),
             P.GenericNack(sequence_number=14), P.DeliverSmResp(sequence_number=15),
             P.Unbind(sequence_number=16)]
    return [[bind, sm], [bind, *parts], [bind, sar, payload], [bind, multi, data_sm],
            [bind, *other], [sm, bind, sm.with_(sequence_number=2)],
            [bind, sm, sm, sm.with_(sequence_number=3)]]


def make_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, pdus in enumerate(_seed_pdus()):
        stream = b"".join(encode(p) for p in pdus)
        for mode in range(3):
            (directory / f"seed-{i}-{mode}").write_bytes(bytes([mode, 0, 15, 1, 0]) + stream)


def run_for(minutes: float, corpus: Path) -> int:
    """libFuzzer for ``minutes``, restarted after each crash; returns the exit status."""
    artifacts = corpus.parent / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    make_corpus(corpus)
    before = set(artifacts.iterdir())
    deadline = time.monotonic() + minutes * 60
    runs = 0
    while (left := int(deadline - time.monotonic())) > 1:
        runs += 1
        cmd = [sys.executable, __file__, str(corpus), f"-max_total_time={left}",
               "-max_len=4096", "-print_final_stats=1", f"-artifact_prefix={artifacts}/"]
        proc = subprocess.run(cmd, check=False, timeout=left + 120)  # noqa: S603 - our own argv
        if proc.returncode == 0:
            break
    found = sorted(set(artifacts.iterdir()) - before)
    print(f"fuzzed {minutes:g} min in {runs} run(s); {len(found)} crash(es)")
    for path in found:
        print(f"  {path}")
    return 1 if found else 0


def main() -> None:
    # Refusals are logged at info; a fuzzer makes millions of them.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    if sys.argv[1:2] == ["--make-corpus"]:
        make_corpus(Path(sys.argv[2]))
        return
    if sys.argv[1:2] == ["--minutes"]:
        corpus = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).parent / "corpus"
        sys.exit(run_for(float(sys.argv[2]), corpus))
    if sys.argv[1:2] == ["--replay"]:
        for name in sys.argv[2:]:
            fuzz_one(Path(name).read_bytes())
            print(f"{name}: ok")
        return
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
