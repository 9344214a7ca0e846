"""The ``rapport`` command: Flask's CLI group with every subsystem's commands attached."""

from __future__ import annotations

from flask.cli import FlaskGroup

from api import create_app
from api.commands import keys, serve
from api.demo import demo
from engine.cli import datasets, evaluate, recommend, train
from engine.render.cli import templates
from fatigue.cli import rules, simulate

main = FlaskGroup(
    name="rapport",
    create_app=create_app,
    add_default_commands=False,
    help="Rapport: decide whether a marketing email is worth sending, what, and when.",
)
main.add_command(train)
main.add_command(evaluate)
main.add_command(recommend)
main.add_command(datasets)
main.add_command(templates)
main.add_command(keys)
main.add_command(serve)
main.add_command(demo)
main.add_command(simulate)
main.add_command(rules)
