#!/usr/bin/env python3
"""Third-party client check of Eddy's gRPC API with Python grpcio.

The stubs are generated at run time from the repository's protos (nothing generated is
committed), so this also checks that the protos compile with stock protoc and that a
non-Rust client interoperates with the server.

Usage:
    python bidi_stream.py --addr HOST:PORT --key KEY --proto-dir REPO/proto [--out-dir DIR]

Needs Python 3.11+, grpcio, grpcio-tools and protobuf. Run it against a fresh server (an
empty data dir): the client event ids are fixed, so a second run against the same server
gets duplicates instead of accepted events and a larger count.

Checks:
  (a) StreamEvents: 5 batches (sequence 10..14) of 100 events, acked in order, each
      accepted == 100 and durable;
  (b) StreamEvents: a batch with a NaN metric gets an `error` outcome (validation_failed,
      rejected field `metrics.temp`) and the stream goes on (the next batch is acked);
  (c) IngestEvents without a key fails with UNAUTHENTICATED;
  (d) Query sees the 501 stored events of device `py-dev` (polled: the store catches up with
      the log asynchronously).
Exit status 0 when every check passes, 1 otherwise (with what was expected and got).
"""

import argparse
import importlib
import math
import sys
import tempfile
import time
from pathlib import Path

import grpc
import grpc_tools
from grpc_tools import protoc

DEVICE = "py-dev"
RPC_TIMEOUT = 30.0  # seconds, for every call (a hung server fails the check, not the CI job)


class CheckFailed(Exception):
    """A check did not hold; the message says what was expected and what was got."""


def expect(what: str, expected, got) -> None:
    if expected != got:
        raise CheckFailed(f"{what}: expected {expected!r}, got {got!r}")


def count_of(row) -> int:
    """Column `n` of a row (a google.protobuf.Struct): a number, or a string for big ints."""
    value = row.fields.get("n")
    kind = value.WhichOneof("kind") if value is not None else None
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value" and value.string_value.isdigit():
        return int(value.string_value)
    raise CheckFailed(f"(d) column n of the first row: expected a count, got {row}")


def generate_stubs(proto_dir: Path, out_dir: Path):
    """Runs protoc over eddy/v1/*.proto and imports the generated modules."""
    protos = sorted(
        str(p.relative_to(proto_dir)) for p in (proto_dir / "eddy" / "v1").glob("*.proto")
    )
    if not protos:
        raise CheckFailed(f"protos in {proto_dir}/eddy/v1: expected some, got none")
    # grpcio-tools ships google/protobuf/*.proto (Timestamp, Struct, ...) in grpc_tools/_proto.
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise CheckFailed(f"protoc {' '.join(protos)}: expected exit 0, got a failure (see above)")
    # The generated modules import each other as `eddy.v1.X_pb2` (namespace packages).
    sys.path.insert(0, str(out_dir))
    ingest = importlib.import_module("eddy.v1.ingest_pb2")
    ingest_grpc = importlib.import_module("eddy.v1.ingest_pb2_grpc")
    common = importlib.import_module("eddy.v1.common_pb2")
    analytics = importlib.import_module("eddy.v1.analytics_pb2")
    analytics_grpc = importlib.import_module("eddy.v1.analytics_pb2_grpc")
    return common, ingest, ingest_grpc, analytics, analytics_grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="gRPC address, HOST:PORT")
    parser.add_argument("--key", required=True, help="API key with read and write scopes")
    parser.add_argument("--proto-dir", required=True, type=Path, help="the repository's proto/ dir")
    parser.add_argument("--out-dir", type=Path, help="stubs go here (default: a temp dir)")
    args = parser.parse_args()

    if args.out_dir is None:
        # Removed when main returns (the modules are imported by then).
        tmp = tempfile.TemporaryDirectory(prefix="eddy-pystubs-")
        out_dir = Path(tmp.name)
    else:
        out_dir = args.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
    common, ingest, ingest_grpc, analytics, analytics_grpc = generate_stubs(
        args.proto_dir.resolve(), out_dir
    )

    auth = (("x-api-key", args.key),)
    with grpc.insecure_channel(args.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        ingest_stub = ingest_grpc.EventIngestionServiceStub(channel)
        analytics_stub = analytics_grpc.AnalyticsServiceStub(channel)

        def event(seq: int, i: int, temp: float):
            return common.Event(
                event_id=f"py-{seq}-{i}", type="reading", device_id=DEVICE, metrics={"temp": temp}
            )

        # (a) Five good batches over one bidirectional stream, acked in order.
        sequences = list(range(10, 15))

        def good_batches():
            for seq in sequences:
                yield ingest.StreamEventsRequest(
                    sequence=seq, events=[event(seq, i, 20.0 + i / 10) for i in range(100)]
                )

        acks = list(ingest_stub.StreamEvents(good_batches(), metadata=auth, timeout=RPC_TIMEOUT))
        expect("(a) ack sequences", sequences, [a.sequence for a in acks])
        for a in acks:
            expect(f"(a) outcome of batch {a.sequence}", "ack", a.WhichOneof("outcome"))
            expect(f"(a) accepted of batch {a.sequence}", 100, a.ack.accepted)
            expect(f"(a) durable of batch {a.sequence}", True, a.ack.durable)

        # (b) A batch with a NaN metric is refused as a whole (event 0 is valid but is not
        # stored either: the count below would show it), and the stream goes on.
        def bad_then_good():
            yield ingest.StreamEventsRequest(
                sequence=20, events=[event(20, 0, 1.0), event(20, 1, math.nan)]
            )
            yield ingest.StreamEventsRequest(sequence=21, events=[event(21, 0, 2.0)])

        answers = list(
            ingest_stub.StreamEvents(bad_then_good(), metadata=auth, timeout=RPC_TIMEOUT)
        )
        expect("(b) answer sequences", [20, 21], [a.sequence for a in answers])
        bad, good = answers
        expect("(b) outcome of the NaN batch", "error", bad.WhichOneof("outcome"))
        expect("(b) error reason", "validation_failed", bad.error.reason)
        invalid_argument = grpc.StatusCode.INVALID_ARGUMENT.value[0]  # 3
        expect("(b) error code (INVALID_ARGUMENT)", invalid_argument, bad.error.code)
        expect(
            "(b) rejected entries (index, field)",
            [(1, "metrics.temp")],
            [(r.index, r.field) for r in bad.error.rejected],
        )
        expect("(b) outcome of the batch after it", "ack", good.WhichOneof("outcome"))
        expect("(b) accepted of the batch after it", 1, good.ack.accepted)

        # (c) A unary call without a key.
        try:
            ingest_stub.IngestEvents(
                ingest.IngestEventsRequest(events=[event(30, 0, 3.0)]), timeout=RPC_TIMEOUT
            )
            raise CheckFailed("(c) IngestEvents without a key: expected UNAUTHENTICATED, got OK")
        except grpc.RpcError as err:
            expect(
                "(c) status of IngestEvents without a key",
                grpc.StatusCode.UNAUTHENTICATED,
                err.code(),
            )

        # (d) The store applies the log asynchronously: poll until it shows all 501 events.
        sql = f"SELECT count(*) AS n FROM events WHERE device_id = '{DEVICE}'"
        started = time.monotonic()
        deadline = started + 20
        polls = 0
        while True:
            polls += 1
            answer = analytics_stub.Query(
                analytics.QueryRequest(sql=sql, omit_arrow=True), metadata=auth, timeout=RPC_TIMEOUT
            )
            expect("(d) row count of the answer", 1, len(answer.rows))
            n = count_of(answer.rows[0])
            # The count only grows: stop at 501, or early when it is past it already.
            if n >= 501 or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        expect(f"(d) {sql} (after polling up to 20 s)", 501, n)

    print(
        f"ok: stream acked {len(acks)} batches x 100 in order; NaN batch -> validation_failed "
        f"(metrics.temp), stream went on; no key -> UNAUTHENTICATED; query n = {n} "
        f"after {polls} poll(s), {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        sys.exit(1)
    except grpc.RpcError as err:
        print(f"FAIL unexpected RPC error: {err.code()}: {err.details()}", file=sys.stderr)
        sys.exit(1)
    except grpc.FutureTimeoutError:
        print("FAIL could not connect within 10 s", file=sys.stderr)
        sys.exit(1)
