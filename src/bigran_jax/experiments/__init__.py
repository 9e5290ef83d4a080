"""The three experiments of the paper, and the mode-collapse benchmarks of PacGAN: the 2-D mixtures
(`synthetic`) and stacked MNIST (`stacked`).
Each module provides the same few names:

- `NEEDS_DATA`: whether it trains on MNIST.
- `SUMMARY_COLUMNS`: the results a sweep's summary.md tabulates.
- `model(config)`: its networks (BiGRAN: a `BiGRAN` with its public functions; the others
  `(generator, discriminator)`, the toy its discriminator alone).
- `make_game(config) -> steps.Game`: its players' initialisation, batch sampler and losses.
- `evaluate(params, config, mnist, key, workdir) -> (results, figure paths, text)`.
- `snapshot(params, config, key, workdir, step, tb, mnist) -> dict | None`: a sample grid during
  training, and metrics the loop writes to metrics.jsonl as `{'step': ..., 'snapshot': ...}` and
  to TensorBoard under `snapshot/`.
"""

from bigran_jax import config
from bigran_jax.experiments import bigran, rdgan, stacked, synthetic, toy

# config.EXPERIMENTS names them (`config.experiment`); here, in the same order, their modules.
EXPERIMENTS = dict(zip(config.EXPERIMENTS, (toy, rdgan, bigran, synthetic, stacked), strict=True))
