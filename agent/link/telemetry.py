"""What a heartbeat reports about the node: uptime, CPU, memory, disk (psutil)."""

import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgecommon.pb import link_pb2


@dataclass
class Telemetry:
    state_dir: Path
    started_mono: float
    process: psutil.Process

    @classmethod
    def start(cls, state_dir: Path) -> "Telemetry":
        process = psutil.Process()
        psutil.cpu_percent(None)  # primes the counter; later calls measure since the last
        return cls(state_dir, time.monotonic(), process)

    def heartbeat(self, seq: int, version: str) -> link_pb2.Heartbeat:
        try:
            disk = psutil.disk_usage(str(self.state_dir)).percent
        except OSError:
            disk = 0.0
        return link_pb2.Heartbeat(
            seq=seq,
            agent_version=version,
            uptime_s=time.monotonic() - self.started_mono,
            cpu_percent=psutil.cpu_percent(None),
            memory_percent=psutil.virtual_memory().percent,
            disk_percent=disk,
            rss_bytes=self.process.memory_info().rss,
        )
