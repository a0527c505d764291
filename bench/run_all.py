"""`make bench`: every benchmark in turn, each printing its own figures.

Each runs in its own interpreter (clean imports for the cold-start figures, no state shared).
The 10-minute load run is `make chaos` (bench/soak.py), not this.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BENCHMARKS = [
    ("pipeline: concurrent calls (1, 10, 50, 100; 1 and 2 workers) at zero and realistic vendor delays",
     ["bench.call_bench"]),
    ("pipeline: one-minute calls (6 questions, 4 s of the caller's silence after each reply), 1 and 50 calls, 1 worker",
     ["bench.call_bench", "--calls", "1", "50", "--delays", "realistic", "--workers", "1", "--questions", "6",
      "--pause-s", "4"]),
    ("the media floor: CPU per call-minute of Twilio's frames alone (receive, parse, VAD, forward to STT), 50 calls",
     ["bench.media_floor_bench"]),
    ("worker scaling: the calls a task of 2 vCPUs (CPU quotas) holds within a 1 s voice-to-voice p95, 1 and 2 workers",
     ["bench.worker_scaling"]),
    ("turn-taking: false interruptions, barge-in and voice-to-voice by turn type (1 and 50 calls)",
     ["bench.turn_bench"]),
    ("agents: this process's own time per model request by history length (service client and stock AsyncOpenAI)",
     ["bench.agent_request_bench"]),
    ("vendor capacity: 10 more callers than the Deepgram budget, one tenant per overflow policy",
     ["bench.capacity_bench"]),
    ("memory: idle RSS with 1 and 2 workers, RSS per live call (50 held), RSS over 1,000 sequential calls",
     ["bench.memory_bench"]),
    ("data: number->tenant lookup (warm/cold cache) and booking writes", ["bench.data_bench"]),
    ("lambdas: warm handler latency and cold import time", ["bench.lambda_bench"]),
    ("offline speech recognition: word error rate on synthesised domain phrases", ["bench.offline_stt_wer"]),
    ("offline speech recognition under load: CPU per stream, falling behind, the loop's lateness (1-10 streams)",
     ["bench.offline_stt_load"]),
]


def main() -> int:
    failed = 0
    for title, module in BENCHMARKS:
        print(f"\n== {title}", flush=True)
        result = subprocess.run([sys.executable, "-m", *module], cwd=ROOT, check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
