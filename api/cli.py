"""The ``rapport`` command: Flask's CLI group with every subsystem's commands attached.

Every command sees the ``RAPPORT_CONFIG`` file's settings (not only the server): ``train``
publishes where ``serve`` looks, ``templates render`` signs links with the configured secret. A
file that cannot be read or written is one line naming it, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask.cli import AppGroup

from api.commands import events, keys, serve
from api.config import config_file_variables, load_settings, mailbox_setting
from api.demo import demo
from engine.cli import datasets, evaluate, recommend, train
from engine.render.cli import templates
from fatigue.cli import rules, simulate
from fatigue.errors import user_errors


class RapportGroup(AppGroup):
    """The root group: applies the configuration file and reports file errors plainly."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the chosen command with the configuration file's settings in its environment."""
        try:
            with user_errors(), _config_file_in_environment():
                return super().invoke(ctx)
        except BrokenPipeError:  # `rapport recommend ... | head`: the reader has all it wants
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
            raise SystemExit(1) from None


@contextmanager
def _config_file_in_environment() -> Iterator[None]:
    """Set the file's settings as RAPPORT_* variables (those already set win), then unset them.

    Every setting is then read once as the server reads it, so a RAPPORT_* value that cannot be
    (``RAPPORT_TRACK_CLICKS=ture``) stops any command with one line, not only ``serve``.
    """
    variables = config_file_variables(os.environ)  # a bad file: an error line (user_errors)
    added = {name: value for name, value in variables.items() if name not in os.environ}
    os.environ.update(added)
    try:
        settings = load_settings(os.environ)
        for address in ("SENDER", "UNSUBSCRIBE_MAILTO"):
            mailbox_setting(settings, address)
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


main = RapportGroup(
    name="rapport",
    help="Rapport: decide whether a marketing email is worth sending, what, and when.",
)
main = click.version_option(package_name="rapport", prog_name="rapport")(main)
main.add_command(train)
main.add_command(evaluate)
main.add_command(recommend)
main.add_command(datasets)
main.add_command(templates)
main.add_command(keys)
main.add_command(events)
main.add_command(serve)
main.add_command(demo)
main.add_command(simulate)
main.add_command(rules)
