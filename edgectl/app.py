"""What every edgectl command receives: parsed arguments, the renderer and the context."""

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgectl import context as ctx
from edgectl.output import Renderer


@dataclass
class App:
    args: argparse.Namespace
    out: Renderer
    environ: Mapping[str, str]
    cwd: Path

    @property
    def context(self) -> ctx.Context:
        return ctx.resolve(self.args.context, self.environ, self.cwd)

    def hub(self, context: ctx.Context) -> str:
        return ctx.hub_address(self.args.hub, self.environ, context)

    @property
    def timeout_s(self) -> float:
        return float(self.args.timeout)
