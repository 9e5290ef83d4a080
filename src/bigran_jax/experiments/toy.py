"""Toy recurrent discrimination (paper section 3.1).

Ten one-hot categories; real samples are uniform over all ten, the "collapsed generator" is uniform
over the first five. An LSTM reads k samples in a row and scores every position j; trained with
binary cross-entropy on equal numbers of real and fake sequences, its optimum at position j for a
sequence of j first-five samples is p^j / (1 + p^j), p = 0.1 / 0.2 = 0.5, and 1 as soon as one
sample comes from categories 5-9. Only the discriminator learns (`train.g_updates = 0`).
"""

from __future__ import annotations

import os
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax import figures, samplers
from bigran_jax.losses import clips_bce, toy_d_loss
from bigran_jax.models import GroupDiscriminator
from bigran_jax.steps import Game

NEEDS_DATA = False
SUMMARY_COLUMNS = ['max_abs_error', 'table_error_last']
CATEGORIES = 10
FAKE_CATEGORIES = 5


def analytic(j, p: float = 0.5):
    """The Bayes-optimal P(real | j first-five samples) = p^j / (1 + p^j)."""
    return p ** np.asarray(j, np.float64) / (1.0 + p ** np.asarray(j, np.float64))


def model(config) -> GroupDiscriminator:
    """The network `config.model` describes: the discriminator (the toy has no generator)."""
    return GroupDiscriminator(k=config.model.k, features=config.model.hidden,
                              unroll=config.model.unroll, numerics=config.model.numerics)


def make_game(config) -> Game:
    disc = model(config)

    def init(key):
        return {'d': disc.init(key, jnp.zeros((config.model.k, CATEGORIES)))['params'], 'g': {}}

    def sample(data, key, n):
        del data
        k_real, k_fake = jax.random.split(key)
        return {'real': samplers.one_hots(k_real, n, CATEGORIES, CATEGORIES),
                'fake': samplers.one_hots(k_fake, n, FAKE_CATEGORIES, CATEGORIES)}

    def d_loss(d_params, g_params, batch, key):
        del g_params, key  # no generator; no dropout
        return toy_d_loss(lambda p, x: disc.apply({'params': p}, x), d_params, batch,
                          clip=clips_bce(config.model.numerics))

    return Game(init=init, sample=sample, d_loss=d_loss)


def discriminator_outputs(params, config, sequences) -> np.ndarray:
    """P(real) at every position of `sequences` `[S, k]` (category ids) -> `[S, k]`."""
    x = jax.nn.one_hot(jnp.asarray(sequences).reshape(-1), CATEGORIES)
    # Flax types `apply` as the output or (output, variables); without `mutable`: the output.
    logits = cast(jax.Array, model(config).apply({'params': params['d']}, x))
    return np.asarray(jax.nn.sigmoid(logits)).reshape(sequences.shape)


def probes(k: int) -> dict:
    """Sequences of first-five samples with one category-5 sample last or first, as the paper's
    [1,2,3,5] and [5,1,2,3] for k = 4."""
    ramp = [1 + i % 4 for i in range(k - 1)]
    return {'late': ramp + [5], 'early': [5] + ramp}


def snapshot(params, config, key, workdir, step, tb, mnist) -> None:
    """Nothing to draw mid-training: the table is the toy's only output."""
    del params, config, key, workdir, step, tb, mnist


def evaluate(params, config, data, key, workdir) -> tuple[dict, list, str]:
    """The section 3.1 table: mean output at each position over random first-five sequences."""
    del data
    k = config.model.k
    seqs = np.asarray(jax.random.randint(key, (config.eval.num_samples, k), 0, FAKE_CATEGORIES))
    out = discriminator_outputs(params, config, seqs)
    j = np.arange(1, k + 1)
    target = analytic(j)
    mean = out.mean(0)
    table = [{'j': int(jj), 'discriminator': float(m), 'analytic': float(a),
              'error': float(m - a), 'worst_sequence_error': float(np.abs(o - a).max())}
             for jj, m, a, o in zip(j, mean, target, out.T, strict=True)]
    probe_rows = {}
    for name, seq in probes(k).items():
        seq = np.array(seq)
        opt = np.where(np.cumsum(seq >= FAKE_CATEGORIES) > 0, 1.0, analytic(j))
        probe_rows[name] = {'sequence': seq.tolist(),
                            'discriminator': discriminator_outputs(params, config, seq[None])[0]
                            .tolist(), 'optimum': opt.tolist()}
    results = {'table': table, 'max_abs_error': float(np.abs(mean - target).max()),
               'table_error_last': table[-1]['error'],
               'probes': probe_rows, 'num_sequences': int(seqs.shape[0])}
    plot = figures.save_line_plot(
        os.path.join(workdir, 'toy_discriminator.png'), j,
        {'LSTM discriminator': mean, 'p^j / (1 + p^j)': target},
        xlabel='position j (samples read)', ylabel='P(real | samples)',
        title=f'Recurrent discrimination, k = {k}')
    return results, [plot], format_table(results)


def format_table(results: dict) -> str:
    lines = ['j  discriminator  analytic   error']
    lines += [f"{r['j']:<2} {r['discriminator']:.5f}        {r['analytic']:.5f}    "
              f"{r['error']:+.5f}" for r in results['table']]
    for name, p in results['probes'].items():
        outs = ' '.join(f'{v:.3f}' for v in p['discriminator'])
        lines.append(f"probe {name} {p['sequence']}: {outs}")
    return '\n'.join(lines)
