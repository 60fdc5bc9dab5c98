"""``shouhu agent``: run a gateway's edge agent, or check its configuration.

    shouhu agent check-config --config gateway.yaml
    shouhu agent run --config gateway.yaml [--status-every 30] [--quiet]

Errors (a bad config, an unusable profile) are one line on stderr and the error's exit code
(2 for configuration). SIGTERM/SIGINT stop the agent gracefully: radios off, beacons still in
range written as ``exit`` sightings, the outbox drained for a moment, ``offline`` status.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any, NoReturn

import click

from shouhu.exceptions import ShouhuError

DEFAULT_CONFIG = "gateway.yaml"

_config_option = click.option(
    "--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
    type=click.Path(dir_okay=False), help="gateway YAML (see examples/gateway.yaml)",
)  # fmt: skip


def _fail(exc: ShouhuError) -> NoReturn:
    click.echo(f"error: {exc.one_line()}", err=True)
    sys.exit(exc.exit_code)


@click.group()
def agent() -> None:
    """The edge agent: radios → device profiles → outbox → MQTT."""


@agent.command("check-config")
@_config_option
def check_config(config_path: str) -> None:
    """Check the configuration, its profiles and sources without starting anything."""
    from edge_agent.agent import load_source
    from edge_agent.config import load_config
    from edge_agent.decoders.dispatch import FrameDecoder
    from shouhu.profiles import load_profiles

    try:
        config = load_config(config_path)
        profiles = load_profiles(config.profile_dirs)
        FrameDecoder(profiles)
        for source in config.sources:
            load_source(source)  # options are checked by the constructor; nothing is opened
    except ShouhuError as exc:
        _fail(exc)
    click.echo(
        f"{config_path}: ok: gateway {config.id} → {config.broker.url} "
        f"({'TLS' if config.broker.tls else 'plaintext'}), "
        f"sources {', '.join(f'{s.name}:{s.type}' for s in config.sources) or 'none'}, "
        f"{len(profiles)} profiles, outbox {config.outbox.path}"
    )


@agent.command()
@_config_option
@click.option(
    "--status-every", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
    help="seconds between status lines on stderr",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="no status lines")
@click.option("-v", "--verbose", is_flag=True, help="log at DEBUG")
def run(config_path: str, status_every: float, quiet: bool, verbose: bool) -> None:
    """Run until SIGTERM/SIGINT."""
    from edge_agent.agent import Agent
    from edge_agent.config import load_config

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(config_path)
        gateway = Agent(config)
    except ShouhuError as exc:
        _fail(exc)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    gateway.start()
    click.echo(f"agent {config.id}: publishing to {config.broker.url}", err=True)
    try:
        while not stop.wait(status_every):
            if not quiet:
                click.echo(f"{time.strftime('%H:%M:%S')} {status_line(gateway)}", err=True)
    finally:
        gateway.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        click.echo(f"stopped: {status_line(gateway, closed=True)}", err=True)


def status_line(gateway: Any, closed: bool = False) -> str:
    """One line: link, frames, outbox; ``closed`` skips what needs the (closed) outbox."""
    s = gateway.stats() if not closed else None
    p = gateway.publisher.stats()
    link = "online" if p.connected else "OFFLINE"
    head = f"{link} published {p.published} acked {p.acked} reconnects {p.reconnects}"
    if s is None:
        return head
    return (
        f"{head} | frames {s.frames} unmatched {s.unmatched} errors {s.decode_errors} "
        f"dropped {s.frames_dropped} | present {s.present} | outbox {s.outbox.depth} "
        f"(evicted {s.outbox.evicted}) lag {p.lag_ms if p.lag_ms is not None else '-'} ms"
    )
