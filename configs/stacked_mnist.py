"""Stacked MNIST, PacGAN's image benchmark (docs/stacked_mnist_protocol.md): `:veegan` (the
default; VEEGAN's setting, DCGAN-sized D and G) or `:small_d` (the unrolled-GAN setting with a
discriminator far smaller than its generator).

  python launch.py --config=configs/stacked_mnist.py:veegan --workdir=runs/stacked  # 6 rows x 3
  python launch.py --config=configs/stacked_mnist.py:small_d --workdir=runs/stacked_small
  python launch.py --config=configs/stacked_mnist.py:tiny --workdir=/tmp/stacked  # seconds
  python launch.py --config=configs/stacked_mnist.py --workdir=runs/stacked_pac4 \
      --config.sweep='()' --config.model.strategy=packing --config.model.k=4 \
      --config.train.batch_size=256

Sources, in PacGAN's `stacked_MNIST_experiments/`: `VEEGAN_experiment/config.py`, `model.py`,
`ops.py` (V) and `unrolled_GAN_experiment/D=0.25G/config.py`, `model.py` (U). As in
configs/mixtures.py each sweep row ties the strategy, k and the batch (PacGAN's batch counts
groups: 64 groups of k in V, 128 in U); the seeds of a row train as one population.
"""

from bigran_jax.config import base_config

SETTINGS = ('veegan', 'small_d')


def rows(groups: int):
    """(model.strategy, model.k, train.batch_size = `groups` groups of k)."""
    return tuple((s, k, groups * k) for s, k in (
        ('plain', 1), ('minibatch', 1), ('packing', 2), ('packing', 4), ('recurrent', 2),
        ('recurrent', 4)))


def get_config(setting: str = 'veegan'):
    if setting == 'tiny':  # small_d, recurrent k = 2, shrunk to seconds (tests, a smoke run)
        c = get_config('small_d')
        c.model.strategy, c.model.k, c.sweep = 'recurrent', 2, ()
        c.model.g_widths, c.model.d_widths, c.model.lstm_hidden = (8, 4, 4, 2), (2, 2, 4), 3
        c.model.latent, c.model.mb_kernels, c.model.mb_kernel_dim = 6, 2, 2
        c.train.num_steps, c.train.batch_size = 4, 8
        c.train.iterations_per_call = c.train.log_every = c.checkpoint.every = 2
        c.eval.num_samples, c.eval.snapshot_steps = 30, (2,)
        return c
    if setting not in SETTINGS:
        raise ValueError(f'configs/stacked_mnist.py:{setting}: the setting must be one of '
                         f'{", ".join(SETTINGS)}, tiny')
    c = base_config()
    c.experiment = 'stacked'
    c.model.strategy = 'packing'  # 'plain' | 'packing' | 'recurrent' | 'minibatch' (not in PacGAN)
    c.model.k = 4  # V, U packing_num: 1..4
    c.model.init_std = 0.02  # V ops.py: N(0, 0.02^2) weights, zero biases
    c.model.lstm_hidden = 128  # 'recurrent' only: LSTM units across the group's features
    c.model.mb_kernels = 100  # 'minibatch' only: B kernels of C numbers (Salimans et al.)
    c.model.mb_kernel_dim = 5
    c.train.d_updates = 1  # V: one D update, then two G updates (DCGAN-tensorflow's "run g_optim
    c.train.g_updates = 2  # twice to make sure that d_loss does not go to zero"); U: one of each
    c.train.d_decay = c.train.g_decay = 0.0  # constant learning rates
    c.train.adam_b1 = 0.5  # V, U beta1
    c.train.iterations_per_call = 50
    c.train.log_every = 1000
    c.checkpoint.every = 10_000
    c.eval.snapshot_steps = (1000, 10_000)
    if setting == 'veegan':
        c.model.latent = 100  # V z_dim; z ~ U[-1, 1]
        c.model.noise = 'uniform'
        c.model.g_widths = (512, 256, 128, 64)  # V generator: gf_dim 64 x 8, 4, 2, 1
        c.model.g_sizes = (2, 4, 7, 14)  # then a last transposed convolution to 28 x 28 x 3
        c.model.g_kernel = 5
        c.model.d_widths = (64, 128, 256, 512)  # V discriminator: df_dim 64 x 1, 2, 4, 8
        c.model.d_kernel = 5
        c.model.d_leak = 0.2
        c.model.d_first_bn = False  # V: batch norm on all but the first convolution
        c.train.num_steps = 100_000  # V: 50 epochs x 128,000 stacked images / 64
        c.train.batch_size = 256  # V batch_size 64 groups of k
        c.train.d_lr = c.train.g_lr = 2e-4  # V learning_rate
        c.eval.num_samples = 26_000  # V num_test_sample
        c.sweep = ((('model.strategy', 'model.k', 'train.batch_size'), rows(64)),
                   ('seed', (0, 1, 2)))
    else:
        c.model.latent = 256  # U z_dim; z ~ N(0, I)
        c.model.noise = 'normal'
        c.model.g_widths = (64, 32, 16, 8)  # U generator: Dense to 4 x 4 x 64, 3 x 3 transposed
        c.model.g_sizes = (4, 7, 14, 28)  # convolutions to 7, 14, 28; a 3 x 3 convolution to 3
        c.model.g_kernel = 3
        c.model.d_widths = (2, 4, 8)  # U discriminator: 3 x 3 convolutions of 2, 4, 8 channels
        c.model.d_kernel = 3
        c.model.d_leak = 0.3
        c.model.d_first_bn = True  # U: batch norm after every convolution
        c.model.lstm_hidden = 8  # as small as the discriminator's last layer
        c.model.mb_kernels = 5  # 5 x 5: T adds 3,200 weights (100 x 5 would add 64,000)
        c.train.d_updates = c.train.g_updates = 1  # U: one update each
        c.train.num_steps = 500_000  # U: 500,000 batches of 128
        c.train.batch_size = 512  # U batch_size 128 groups of k
        c.train.d_lr, c.train.g_lr = 2e-4, 1e-4  # U disc_ and gen_learning_rate
        c.train.adam_b2 = 0.99  # U beta2
        c.eval.num_samples = 25_600  # U num_test_sample
        c.sweep = ((('model.strategy', 'model.k', 'train.batch_size'), rows(128)),
                   ('seed', (0, 1, 2)))
    c.population = True  # a row's seeds as one program: an accelerator benchmark
    return c
