"""Print the trace of a reservation (or any trace id) from the local Jaeger, as a tree.

    python -m scripts.observability.trace RESERVATION_ID
    python -m scripts.observability.trace --trace-id 4bf92f3577b34da6a3ce929d0e0e4736

A reservation's trace is found by the `cinema.reservation_id` attribute the services put on
the spans that handle it (the gRPC server span, the relay's publish and the consumers).
"""

from __future__ import annotations

import argparse
import sys

from scripts.observability.jaeger import QUERY_HTTP_PORT, JaegerQuery, render_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reservation_id", nargs="?", help="the reservation whose trace to show")
    parser.add_argument("--trace-id", help="show this trace instead")
    parser.add_argument("--jaeger", default=f"http://127.0.0.1:{QUERY_HTTP_PORT}", help="Jaeger's query URL")
    args = parser.parse_args(argv)
    if not (args.trace_id or args.reservation_id):
        parser.error("give a reservation id or --trace-id")
    query = JaegerQuery(args.jaeger)
    try:
        if args.trace_id:
            trace = query.trace(args.trace_id)
            traces = [trace] if trace else []
        else:
            traces = query.find("reservation", {"cinema.reservation_id": args.reservation_id})
    except OSError as error:  # URLError included: Jaeger is not there
        print(f"cannot reach Jaeger at {args.jaeger}: {error}", file=sys.stderr)
        return 1
    if not traces:
        print(
            "no trace found: `make up` records a tenth of the traces (start it with CINEMA_TRACE_SAMPLE_RATIO=1 "
            "to record all), and Jaeger keeps them in memory only while it runs",
            file=sys.stderr,
        )
        return 1
    for trace in traces:
        print(f"trace {trace['traceID']}  {args.jaeger}/trace/{trace['traceID']}")
        print(render_tree(trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
