"""The fields every experiment's config shares, and the checks run before any training starts.

Experiment configs (`configs/*.py`) start from `base_config()` and fill in `model`, `train` and
`eval`; see `configs/bigran.py` for the fully commented reference.
"""

from __future__ import annotations

import difflib
import json
import math

import jax
import ml_collections

from bigran_jax.data import SOURCES
from bigran_jax.mixtures import MIXTURES
from bigran_jax.models import READ_STEERS
from bigran_jax.recurrent import NUMERICS

EXPERIMENTS = ('toy', 'rdgan', 'bigran', 'synthetic', 'stacked', 'draw')
# The mode-collapse benchmarks' discriminators (benchmark_models.StrategyDiscriminator); the last
# two read one sample at a time, so they take model.k = 1 only.
STRATEGIES = ('recurrent', 'packing', 'plain', 'minibatch')
# The 2-D benchmark's networks (experiments/synthetic.py): PacGAN's, or the unrolled GAN's.
ARCHITECTURES = ('pacgan', 'unrolled')
# Stacked MNIST's generator noise (experiments/stacked.py).
NOISES = ('uniform', 'normal')


# Keys that were renamed, old -> new: a config (or a workdir's config.json, or an override) that
# still names the old key is refused with the new name.
RENAMED = {'model.steps': 'model.t', 'train.d_steps': 'train.d_updates',
           'train.g_steps': 'train.g_updates'}


def renamed(path: str) -> str | None:
    """The new name of a renamed config key (`'model.steps'` -> `'model.t'`), else None."""
    return RENAMED.get(path)


class ConfigError(ValueError):
    """A config key is missing, unknown, of the wrong type or out of range."""


def dotted_keys(config, prefix: str = '') -> list[str]:
    """Every leaf key of a config as a dotted path: `['experiment', 'seed', 'model.k', ...]`."""
    out = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict | dict):
            out += dotted_keys(value, f'{prefix}{key}.')
        else:
            out.append(prefix + key)
    return out


def nearest(name: str, choices, n: int = 3) -> str:
    """' (did you mean a, b?)' naming the choices closest to `name`, or '' when none is close;
    a choice that shares the name's last part (`d_lr` for `lr`) counts as close."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    leaf = name.rpartition('.')[2]
    close += [c for c in choices if leaf and leaf in c.rpartition('.')[2] and c not in close]
    return f" (did you mean {', '.join(close[:n])}?)" if close else ''


def check_override(config, key: str) -> None:
    """Raises ConfigError in one line when `key` (`'train.d_lr'`) names no field of `config`,
    with the renamed key's new name or the nearest existing names."""
    if renamed(key):
        raise ConfigError(f'--config.{key} was renamed --config.{renamed(key)}')
    keys = dotted_keys(config)
    if key not in keys:
        raise ConfigError(f'--config.{key}: no such config key{nearest(key, keys)}')


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.experiment = ''  # one of EXPERIMENTS
    c.seed = 0  # a run's randomness: init, data order, noise, dropout (the judge has its own)
    c.num_devices = 0  # devices for data parallelism; 0 = every device JAX finds

    c.data = ml_collections.ConfigDict()
    c.data.source = 'auto'  # 'auto' | 'tfds' | 'idx' | 'embedded' | 'folder' (bigran_jax.data)
    c.data.dir = ''  # TFDS data_dir for 'tfds'/'auto', the folder for 'idx' and 'folder'
    # The dataset: its TFDS name for 'tfds' ('mnist', 'fashion_mnist', 'cifar10', ...), its name
    # in logs and in the judge's choice otherwise (the shipped judge judges 'mnist' only).
    c.data.name = 'mnist'
    # (H, W, C) of the images: set from the data when a run starts (and so saved in its
    # config.json), whatever is written here.
    c.data.image_shape = (28, 28, 1)

    c.model = ml_collections.ConfigDict()
    c.model.k = 4  # samples the discriminator reads in a row (recurrent-discrimination depth)
    c.model.unroll = 1  # lax.scan's unroll of every recurrence (speed only; not train.unroll)
    # 'flax' (Flax's initialisers, logistic gates, one dropout mask per LSTM input) or 'keras1'
    # (what the paper's code inherited: glorot / orthogonal per gate, hard_sigmoid gates, one
    # dropout mask per gate, clipped cross-entropy); see bigran_jax.recurrent.
    c.model.numerics = 'flax'

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000  # training iterations (an iteration: d_updates, then g_updates)
    c.train.batch_size = 64  # global batch per update, whatever the device count
    c.train.d_updates = 4  # discriminator updates per iteration, each on a fresh batch
    c.train.g_updates = 1  # generator updates per iteration
    c.train.d_lr = 3e-4
    c.train.d_decay = 1e-4  # Keras 1 time decay: lr / (1 + decay * updates)
    c.train.g_lr = 1e-4
    c.train.g_decay = 4e-4
    c.train.real_label = 1.0  # D's target for real samples (< 1: one-sided label smoothing)
    c.train.adam_b1 = 0.9  # Adam's first-moment decay, both players (Keras's default)
    c.train.adam_b2 = 0.999  # Adam's second-moment decay, both players (Keras's default)
    c.train.d_l1 = 0.0  # L1 weight penalty of the discriminator
    c.train.g_l1 = 0.0  # L1 weight penalty of the generator (and encoder)
    # Decay of an exponential moving average of the generator's parameters, which snapshots,
    # evaluation and exports then use (Yazici et al. 2019); 0: off, the trained parameters.
    c.train.g_ema = 0.0
    c.train.unroll = 0  # unrolled GAN (Metz et al. 2017): G's loss vs D after K updates; 0: off
    c.train.unroll_order = 'second'  # 'second': G's gradient through the K updates; 'first': not
    # Added to Adam's second moment under the square root in the unrolled updates only (optax's
    # eps_root): the second-order gradient differentiates sqrt(nu), infinite at nu = 0. 1e-16:
    # sqrt = 1e-8, Adam's eps, so only parameters with gradients near 1e-8 or below step less.
    c.train.unroll_eps_root = 1e-16
    c.train.iterations_per_call = 10  # iterations per compiled call (fewer dispatches)
    c.train.log_every = 100  # iterations between log lines / metrics.jsonl rows
    # A non-finite loss or parameter: 'stop' the run, or 'rollback' to the last checkpoint (the
    # initial state if none) and go on with both learning rates times rollback_lr_factor.
    c.train.on_divergence = 'stop'
    c.train.rollback_lr_factor = 0.5
    c.train.max_rollbacks = 3  # rollbacks per run; one more divergence stops it

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1000  # iterations between checkpoints (0: only the final one)
    c.checkpoint.keep = 3  # checkpoints kept

    c.eval = ml_collections.ConfigDict()
    c.eval.num_samples = 10_000  # generated samples evaluated and saved to samples.npz
    c.eval.snapshot_steps = ()  # iterations after which a sample grid is saved
    c.eval.snapshot_samples = 0  # rdgan, bigran: samples judged at each snapshot (0: the grid only)
    # The judge of generated digits: '' the MNIST judge shipped in the package, 'train' one
    # trained on the run's own data (cached per data), else the path of a saved judge.
    c.eval.classifier = ''

    # Sweep members: a tuple of (config path, values) pairs; the members are their product. A
    # pair may set several fields together: ((path, path, ...), ((value, value, ...), ...)).
    c.sweep = ()
    # Train sweep members that differ only in `seed` and optimiser numbers (POPULATION_FREE) as
    # one population: one compiled program over their stacked states (see bigran_jax.train.Run),
    # which fills an accelerator but ends where each member's run alone would only to float
    # rounding (a vmapped matmul sums in another order). False: one after another, each member
    # bit for bit its run alone (docs/usage.md#reproducibility); on a 2-core CPU no slower.
    c.population = False
    return c


def validate(config: ml_collections.ConfigDict, devices: int | None = None) -> None:
    """Raises ConfigError with one line naming the offending key; run before anything is built.

    `devices`: how many devices JAX sees (`jax.device_count()` when None), which
    `config.num_devices` may not exceed and the batch must split over into groups of k.
    """
    def need(ok, key, what):
        if not ok:
            raise ConfigError(f'config.{key}={config_get(config, key)!r}: {what}')

    for old, new in RENAMED.items():
        section, _, leaf = old.rpartition('.')
        if leaf in config.get(section, {}):
            raise ConfigError(f'config.{old} was renamed config.{new}: set {new} instead')
    _check_types(config, base_config())
    need(config.experiment in EXPERIMENTS, 'experiment', f'must be one of {EXPERIMENTS}')
    need(config.model.k >= 1, 'model.k', 'must be >= 1')
    need(config.train.batch_size % config.model.k == 0, 'train.batch_size',
         f'must be a multiple of model.k={config.model.k}')
    _check_devices(config, need, jax.device_count() if devices is None else devices)
    need(config.train.num_steps >= 0, 'train.num_steps', 'must be >= 0')
    need(config.train.d_updates >= 0 and config.train.g_updates >= 0, 'train.d_updates',
         'update counts must be >= 0')
    need(config.experiment != 'toy' or config.train.g_updates == 0, 'train.g_updates',
         'must be 0 for the toy experiment (it has no generator)')
    need(0 <= config.train.g_ema < 1, 'train.g_ema', 'must be in [0, 1) (0: no moving average)')
    _check_int(config, need, 'train.unroll', 0, ' (0: no unrolled discriminator updates)')
    need(config.train.unroll == 0 or config.train.g_updates > 0, 'train.unroll',
         'needs train.g_updates > 0 (the unroll is taken in the generator\'s update)')
    need(config.train.unroll_order in ('second', 'first'), 'train.unroll_order',
         "must be 'second' or 'first'")
    need(config.train.unroll_eps_root >= 0, 'train.unroll_eps_root', 'must be >= 0')
    need(config.train.iterations_per_call >= 1, 'train.iterations_per_call', 'must be >= 1')
    need(config.train.log_every >= 1, 'train.log_every', 'must be >= 1')
    need(config.eval.snapshot_samples >= 0, 'eval.snapshot_samples', 'must be >= 0')
    need(config.model.unroll >= 1, 'model.unroll', 'must be >= 1')
    need(config.model.numerics in NUMERICS, 'model.numerics', f'must be one of {NUMERICS}')
    need(config.data.source in SOURCES, 'data.source', f'must be one of {SOURCES}')
    need(bool(config.data.name), 'data.name', 'must name the dataset')
    shape = tuple(config.data.image_shape)
    need(len(shape) == 3 and all(isinstance(n, int) and n >= 1 for n in shape),
         'data.image_shape', f'must be (H, W, C), three positive ints; got {shape}')
    need(config.train.on_divergence in ('stop', 'rollback'), 'train.on_divergence',
         "must be 'stop' or 'rollback'")
    need(0 < config.train.rollback_lr_factor < 1, 'train.rollback_lr_factor',
         'must be in (0, 1)')
    need(config.train.max_rollbacks >= 0, 'train.max_rollbacks', 'must be >= 0')
    if config.experiment == 'synthetic':
        need(config_get(config, 'data.mixture') in MIXTURES, 'data.mixture',
             f'must be one of {MIXTURES}')
        need(config_get(config, 'model.architecture') in ARCHITECTURES, 'model.architecture',
             f'must be one of {ARCHITECTURES}')
    if config.experiment == 'stacked':
        need(config_get(config, 'model.noise') in NOISES, 'model.noise',
             f'must be one of {NOISES}')
    if config.experiment in ('synthetic', 'stacked'):
        _check_strategy(config, need)
    if config.experiment == 'bigran':
        _check_bigran(config, need)
    if config.experiment == 'draw':
        _check_draw(config, need)
    if config.experiment == 'rdgan':
        rate = config_get(config, 'model.d_dropout')
        need(isinstance(rate, (int, float)) and 0 <= rate < 1, 'model.d_dropout',
             'must be a number in [0, 1)')
        _check_weights(config, need, ('train.instance_noise',))
        _check_rdgan_discriminator(config, need)
    for path, values in config.sweep:
        paths = (path,) if isinstance(path, str) else tuple(path)
        for p in paths:
            config_get(config, p)  # raises on an unknown key
        need(len(values) > 0, 'sweep', f'{path} has no values')
        if len(paths) > 1:
            need(all(len(v) == len(paths) for v in values), 'sweep',
                 f'every value of {path} must list {len(paths)} values, one per path')


def _check_devices(config, need, devices: int) -> None:
    """`num_devices` exists, and the global batch splits over them into groups of k."""
    need(0 <= config.num_devices <= devices, 'num_devices',
         f'JAX sees {devices} device(s) (0: use them all)')
    shards, batch, k = config.num_devices or devices, config.train.batch_size, config.model.k
    need(batch % shards == 0, 'train.batch_size', f'does not divide over {shards} devices: use a '
         f'multiple of {shards * k} or set config.num_devices')
    need(batch // shards % k == 0, 'train.batch_size', f'gives {batch // shards} samples per '
         f'device, which do not split into groups of k={k}')


def _check_strategy(config, need) -> None:
    """The discriminator strategy of the mode-collapse benchmarks (configs/mixtures.py,
    configs/stacked_mnist.py)."""
    strategy = config_get(config, 'model.strategy')
    need(strategy in STRATEGIES, 'model.strategy', f'must be one of {STRATEGIES}')
    need(config.model.k == 1 or strategy in ('recurrent', 'packing'), 'model.k',
         f"must be 1 with model.strategy='{strategy}' (it scores one sample at a time); "
         "'packing' or 'recurrent' read groups of k")


def _check_int(config, need, key: str, low: int, what: str = ''):
    """`key` is an int >= `low` (`what` says what its smallest value means); returns it."""
    value = config_get(config, key)
    need(isinstance(value, int) and not isinstance(value, bool) and value >= low, key,
         f'must be an int >= {low}{what}')
    return value


def _check_rdgan_discriminator(config, need) -> None:
    """The RD-GAN's discriminator: the paper's LSTM on pixels (`model.d_body = 0`), or a strategy
    around an MLP body of `model.d_body` units (configs/rdgan.py:strategies)."""
    _check_strategy(config, need)
    body = _check_int(config, need, 'model.d_body', 0)
    need(body > 0 or config.model.strategy == 'recurrent', 'model.strategy',
         "must be 'recurrent' with model.d_body=0 (the paper's LSTM on pixels); the other "
         'strategies need a base network, model.d_body > 0')
    need(body == 0 or config.model.d_dropout == 0, 'model.d_dropout',
         'must be 0 with model.d_body > 0 (dropout is on the paper\'s discriminator only)')


# BiGRAN's fidelity and regulariser terms (bigran_jax.losses): weights, and where the cycle reads.
BIGRAN_TERMS = ('train.cycle_x', 'train.cycle_z', 'train.kl', 'train.r1', 'train.step_power')
CYCLE_STEPS = ('last', 'all')
R1_ON = ('pair', 'image')


def _check_weights(config, need, keys) -> None:
    """Each of `keys` is a number >= 0, 0 turning its term off."""
    for key in keys:
        value = config_get(config, key)
        need(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, key,
             'must be a number >= 0 (0 turns the term off)')


def _check_bigran(config, need) -> None:
    _check_weights(config, need, BIGRAN_TERMS)
    need(config_get(config, 'train.cycle_steps') in CYCLE_STEPS, 'train.cycle_steps',
         f'must be one of {CYCLE_STEPS}')
    need(config_get(config, 'train.r1_on') in R1_ON, 'train.r1_on', f'must be one of {R1_ON}')
    for key, low, what in (('model.d_minibatch', 0, ' (0: no minibatch discrimination)'),
                           ('model.d_joint', 0, ' (0: no joint layer)'),
                           ('model.decoder_mlp', 0, ' (0: the paper\'s decoder)'),
                           ('model.decoder_layers', 1, ''), ('model.d_hidden', 1, '')):
        _check_int(config, need, key, low, what)
    _check_attention(config, need)


def _check_attention(config, need) -> None:
    """DRAW's attention keys (configs/bigran.py, configs/draw.py); a config written before they
    existed has none, which means none of it."""
    model = config.model
    for key in ('read_n', 'write_n'):
        if key in model:
            _check_int(config, need, f'model.{key}', 0, ' (0: no attention, the whole image)')
    if 'read_steer' in model:
        need(model.read_steer in READ_STEERS, 'model.read_steer', f'must be one of {READ_STEERS}')
    if 'canvas_bias' in model:
        bias = model.canvas_bias
        need(isinstance(bias, int | float) and not isinstance(bias, bool)
             and math.isfinite(bias), 'model.canvas_bias',
             'must be a finite number (0: no learned initial canvas)')
    if 'learned_start' in model:
        need(isinstance(model.learned_start, bool), 'model.learned_start',
             'must be True or False (learn the decoder\'s initial canvas and states)')


def _check_draw(config, need) -> None:
    """DRAW (configs/draw.py): one player, the encoder+decoder ('g'); no discriminator."""
    need(config.train.d_updates == 0, 'train.d_updates',
         'must be 0 for the draw experiment (it has no discriminator)')
    need(config.train.g_updates >= 1, 'train.g_updates', 'must be >= 1 (DRAW trains only g)')
    need(config.train.get('unroll', 0) == 0, 'train.unroll',
         'must be 0 for the draw experiment (there is no discriminator to unroll)')
    for key in ('model.t', 'model.latent', 'model.hidden'):
        _check_int(config, need, key, 1)
    _check_attention(config, need)


# What members of one population may differ in: the seed, and the optimiser's numbers, which live
# in each member's optimiser state rather than in the compiled program.
POPULATION_FREE = ('seed', 'train.d_lr', 'train.g_lr', 'train.d_decay', 'train.g_decay',
                   'train.adam_b1', 'train.adam_b2')


def population_key(config) -> str:
    """Everything in `config` but `POPULATION_FREE`: configs with the same key make one program."""
    fields = config.to_dict()
    for path in POPULATION_FREE:
        node, leaf = config_parent(fields, path)
        del node[leaf]
    return json.dumps(fields, sort_keys=True, default=repr)


def config_parent(config, path: str):
    """The section holding a dotted key, and the key's last part:
    `config_parent(c, 'train.d_lr') -> (c.train, 'd_lr')`. On a ConfigDict or its `to_dict()`;
    a missing key or section is a ConfigError naming it."""
    *parents, leaf = path.split('.')
    node = config
    for part in parents:
        if not isinstance(node, ml_collections.ConfigDict | dict) or part not in node:
            raise ConfigError(f'config has no key {path!r} (no {part!r} under it)')
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict | dict):
        raise ConfigError(f'config has no key {path!r} ({".".join(parents)} is not a section)')
    if leaf not in node:
        raise ConfigError(f'config has no key {path!r} (no {leaf!r} under it)')
    return node, leaf


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` with every key of `base_config()` it lacks set to its default: a
    workdir's config.json written before the key existed (e.g. `data.image_shape`)."""
    config = ml_collections.ConfigDict(config.to_dict())

    def fill(node, base):
        for key, default in base.items():
            if key not in node:
                node[key] = default
            elif isinstance(default, ml_collections.ConfigDict) and isinstance(
                    node[key], ml_collections.ConfigDict):
                fill(node[key], default)

    fill(config, base_config())
    return config


def config_get(config, path: str):
    node, leaf = config_parent(config, path)
    return node[leaf]


def config_set(config, path: str, value) -> None:
    """Sets a dotted key of `config` (which must exist), e.g. `config_set(c, 'model.k', 8)`."""
    node, leaf = config_parent(config, path)
    node[leaf] = value


# A float field takes an int (3 for 3.0); a tuple field takes a list (config.json has lists).
_ACCEPTS = {float: (int, float), tuple: (tuple, list), list: (tuple, list)}


def _check_types(config, base: ml_collections.ConfigDict, prefix: str = '') -> None:
    """Every key of `base_config()` is in `config` with a value of its type. ConfigDict enforces
    types on assignment, but not on a config built from a dict (a sweep member, a config.json)."""
    for key, default in base.items():
        path = prefix + key
        value = config_get(config, path)
        if isinstance(default, ml_collections.ConfigDict):
            _check_types(config, default, path + '.')
            continue
        kind = type(default)
        ok = isinstance(value, _ACCEPTS.get(kind, kind))
        if not ok or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f'config.{path}={value!r}: must be of type {kind.__name__}, '
                              f'not {type(value).__name__}')
