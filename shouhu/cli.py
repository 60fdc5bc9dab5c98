"""The ``shouhu`` command line: a thin click shell over the packages.

Verbs live beside the code they drive and are imported lazily from ``COMMANDS`` so that
``shouhu --help`` stays fast and one broken optional part cannot take the others down.
Every ``ShouhuError`` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from shouhu import __version__
from shouhu.exceptions import ShouhuError

# verb -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "agent": "edge_agent.cli:agent",
    "collector": "collector.cli:collector",
    "decode": "shouhu.decode_cli:decode",
    "demo": "shouhu.demo:demo",
    "profiles": "shouhu.profiles_cli:profiles",
    "provision": "provisioning.cli:provision",
    "registry": "collector.registry.cli:registry",
    "alerts": "collector.alerts.cli:alerts",
    "wearer": "collector.registry.cli:wearer",
    "grafana": "grafana.cli:grafana",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use from ``lazy_commands``."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands if lazy_commands is not None else COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names |= {n for n in self.lazy_commands if self.get_command(ctx, n) is not None}
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and module_name.startswith(exc.name):
                    return None  # part not built yet
                raise
            cmd = getattr(module, attr)
            assert isinstance(cmd, click.Command)
            return cmd
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShouhuError as exc:
            click.echo(f"error: {exc.one_line()}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shouhu")
def main() -> None:
    """Shouhu (守護): edge gateways and a collector that keep a city's vulnerable people safe.

    Start with `shouhu demo` (no services needed), then `shouhu agent run` on a gateway and
    `shouhu collector run` in the data centre.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
