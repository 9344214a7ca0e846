"""The engine's commands: train, evaluate, recommend, datasets.

Heavy imports (implicit, scipy) happen inside the commands so ``rapport --help`` stays instant.
"""

from engine.cli.datasets import datasets
from engine.cli.serving import recommend
from engine.cli.training import evaluate, train

__all__ = ["datasets", "evaluate", "recommend", "train"]
