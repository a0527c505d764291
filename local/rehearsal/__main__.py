"""`python -m local.rehearsal --env dev` (`make rehearse ENV=dev`): see rehearse.py."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from local.rehearsal.cloud_assembly import RehearsalFault
from local.rehearsal.rehearse import rehearse


def main() -> int:
    parser = argparse.ArgumentParser(prog="rehearse", description=__doc__)
    parser.add_argument("--env", default="dev", choices=("dev", "staging", "prod"))
    parser.add_argument("--keep", type=Path, help="keep the work folder (cdk.out, logs, call.wav) here")
    args = parser.parse_args()
    try:
        report = asyncio.run(rehearse(args.env, args.keep))
    except RehearsalFault as fault:
        print(f"REHEARSAL FAILED at {fault}", file=sys.stderr)
        return 1
    booked = report.booking is not None
    print(f"\nrehearsal {args.env}: {'PASSED' if booked and report.mcp_calls else 'FAILED'} - booking "
          f"{'made' if booked else 'MISSING'}, {len(report.transcript)} transcript entries via the tenant API, "
          f"{report.mcp_calls} MCP call(s), protection {report.protection_changes}, "
          f"{len(report.traces)} trace(s) exported")
    return 0 if booked and report.mcp_calls else 1


if __name__ == "__main__":
    sys.exit(main())
