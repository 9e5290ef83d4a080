"""The three experiments of the paper, the mode-collapse benchmarks of PacGAN: the 2-D mixtures
(`synthetic`) and stacked MNIST (`stacked`), and DRAW (`draw`), the variational model BiGRAN's
recurrent encoder and decoder follow. Each module is an `Experiment`: it provides the names that
protocol lists, and nothing else is asked of it.
"""

from __future__ import annotations

from typing import Any, Protocol

from bigran_jax import config
from bigran_jax.experiments import bigran, draw, rdgan, stacked, synthetic, toy
from bigran_jax.steps import Game


class Experiment(Protocol):
    """What the training loop, evaluation and sweeps use of an experiment module."""

    NEEDS_DATA: bool  # whether it trains on MNIST
    SUMMARY_COLUMNS: list[str]  # the results a sweep's summary.md tabulates

    def model(self, config) -> Any:
        """Its networks (BiGRAN: a `BiGRAN`, DRAW: a `DRAW`, with their public functions; the
        others `(generator, discriminator)`, the toy its discriminator alone)."""

    def make_game(self, config) -> Game:
        """Its players' initialisation, batch sampler and losses."""

    def evaluate(self, params, config, mnist, key, workdir) -> tuple[dict, list, str]:
        """`(results, figure paths, text)` of the final parameters."""

    def snapshot(self, params, config, key, workdir, step, tb, mnist) -> dict | None:
        """A sample grid during training, and metrics the loop writes to metrics.jsonl as
        `{'step': ..., 'snapshot': ...}` and to TensorBoard under `snapshot/`."""


# config.EXPERIMENTS names them (`config.experiment`); here, in the same order, their modules.
EXPERIMENTS: dict[str, Experiment] = dict(zip(
    config.EXPERIMENTS, (toy, rdgan, bigran, synthetic, stacked, draw), strict=True))
