"""What every edgectl command receives: parsed arguments, the renderer and the context."""

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgecommon.cli.context_dir import Context
from edgecommon.cli.output import Renderer
from edgectl import context as ctx


@dataclass
class App:
    args: argparse.Namespace
    out: Renderer
    environ: Mapping[str, str]
    cwd: Path

    @property
    def context(self) -> Context:
        return ctx.resolve(self.args.context, self.environ, self.cwd)

    def hub(self, context: Context) -> str:
        return ctx.hub_address(self.args.hub, self.environ, context)

    @property
    def timeout_s(self) -> float:
        return float(self.args.timeout)
