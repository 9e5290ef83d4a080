"""The 2-D mode-collapse benchmarks: `:ring`, 8 Gaussians (std 0.01) on the unit circle (the
default), or `:grid`, 25 Gaussians (std 0.05), 5 x 5 with spacing 2, under PacGAN's protocol
(docs/pacgan_2d_protocol.md); `:veegan_ring` and `:veegan_grid`, the same mixtures under VEEGAN's
(docs/veegan_2d_protocol.md, below); `:tiny`, the ring shrunk to seconds.

  python launch.py --config=configs/mixtures.py:ring --workdir=runs/ring   # every row x 5 seeds
  python launch.py --config=configs/mixtures.py:grid --workdir=runs/grid
  python launch.py --config=configs/mixtures.py:ring --workdir=runs/ring_pac4 --config.sweep='()' \
      --config.model.strategy=packing --config.model.k=4 --config.train.batch_size=400

Sources: `2DRing_GAN&PacGAN/config.py` and `2DGrid_GAN&PacGAN/config.py` (PC; they differ only
in the mixture) and `pacgan_task.py` (PT) in PacGAN's `synthetic_data_experiments/`.

The sweep is one row per discriminator, not a product of strategies and k: 'plain' and
'minibatch' score one sample at a time (k = 1 only), and PacGAN's batch is 100 *groups*, so the
batch in samples grows with k. Each row therefore sets strategy, k and batch together (a tied
sweep axis); 'plain' is PacGAN's GAN row (packing with k = 1 is the same network), and
'recurrent' with k = 1 is the recurrent discriminator's own one-sample baseline. The 5 seeds of a
row train as one population.

VEEGAN protocol (`:veegan_ring`, `:veegan_grid`), the one VEEGAN's Table 1 (GAN, ALI, unrolled
GAN, VEEGAN) reports: 100,000 iterations of batch 500, 1:1 updates, 2,500 samples scored, high
quality within 3 standard deviations of the nearest mode, 5 seeds. VEEGAN's code has no GAN
baseline, so the networks and learning rates are the unrolled GAN notebook's (Adam b1 0.5, D 1e-4,
G 1e-3; tanh MLPs of 2 x 128 units, z of 256). Deviations: the generator's loss is non-saturating
(the notebook's plain GAN is minimax) and the discriminator's last layer starts N(0, 0.02^2)
(orthogonal, gain 1.4, in the notebook). Every row reads 500 samples per update (125 groups of 4
for packing and recurrent k = 4).

  python launch.py --config=configs/mixtures.py:veegan_ring --workdir=runs/veegan_ring
"""

from bigran_jax.config import base_config

ROWS = (  # (model.strategy, model.k, train.batch_size = 100 groups of k)
    ('plain', 1, 100), ('minibatch', 1, 100),
    ('packing', 2, 200), ('packing', 3, 300), ('packing', 4, 400),
    ('recurrent', 1, 100), ('recurrent', 2, 200), ('recurrent', 3, 300), ('recurrent', 4, 400))


MIXTURES = {  # PC MEANS, equal weights, and PC VARIANCES: std ** 2 * I
    'ring': 0.01,  # (cos 2 pi i / 8, sin 2 pi i / 8), i = 0..7
    'grid': 0.05,  # (i, j), i, j in -4, -2, 0, 2, 4
}


VEEGAN_ROWS = (  # (model.strategy, model.k, train.batch_size = 500 samples, V's batch)
    ('plain', 1, 500), ('minibatch', 1, 500), ('packing', 4, 500), ('recurrent', 4, 500))


def get_config(variant: str = 'ring'):
    mixture = 'ring' if variant == 'tiny' else variant.removeprefix('veegan_')
    if mixture not in MIXTURES:
        raise ValueError(f'configs/mixtures.py:{variant}: use one of '
                         f'{", ".join([*MIXTURES, *(f"veegan_{m}" for m in MIXTURES)])}, tiny')
    c = base_config()
    c.experiment = 'synthetic'
    c.data.mixture = mixture
    c.data.std = MIXTURES[mixture]
    c.model.architecture = 'pacgan'  # 'pacgan' | 'unrolled' (experiments/synthetic.py)
    c.model.strategy = 'packing'  # 'plain' | 'packing' | 'recurrent' | 'minibatch' (not in PacGAN)
    c.model.k = 4  # PC num_packing: 1..4
    c.model.latent = 2  # PC num_zdim 2, z ~ N(0, I) (num_zmode 1, z_mode_r 0, z_mode_std 1)
    c.model.g_hidden = 400  # PC gen_hidden_size; PT: Dense without bias, batch norm, ReLU
    c.model.g_layers = 4  # PT decoder: 4 hidden layers, then Dense 2 with bias
    c.model.d_hidden = 200  # PC disc_hidden_size
    c.model.d_layers = 3  # PT discriminator: 3 LinearMaxout layers, then Linear 1
    c.model.maxout_pieces = 5  # PC disc_maxout_pieces
    c.model.init_std = 0.02  # PC weights_init_std: N(0, 0.02^2) weights, zero biases
    c.model.lstm_hidden = 200  # 'recurrent' only: LSTM units, the maxout layers' width
    c.model.mb_kernels = 100  # 'minibatch' only: B kernels of C numbers, Salimans et al.'s
    c.model.mb_kernel_dim = 5  # MNIST model (improved-gan, MinibatchLayer(num_kernels=100))
    c.train.num_steps = 400_000  # PC num_epoch 400 x (num_sample 100,000 / batch_size 100)
    c.train.batch_size = 400  # PC batch_size: 100 groups of k (100 * k samples per side)
    c.train.d_updates = 1  # one update each per iteration; PacGAN updates both simultaneously on
    c.train.g_updates = 1  # one batch (ALI's ali_algorithm), this loop alternates on fresh batches
    c.train.d_lr = c.train.g_lr = 1e-4  # PC learning_rate (Adam)
    c.train.d_decay = c.train.g_decay = 0.0  # constant learning rate
    c.train.adam_b1 = 0.8  # PC beta1 (beta2 0.999, eps 1e-8: Blocks' and optax's defaults)
    c.train.real_label = 1.0  # no label smoothing (PacGAN.compute_losses)
    c.train.iterations_per_call = 500
    c.train.log_every = 10_000
    c.checkpoint.every = 50_000
    c.eval.num_samples = 2500  # num_log_figure_sample: samples the metrics are computed on
    c.eval.threshold = 3.0  # MetricLogger dis_thre: high quality within 3 stds of a mode
    c.eval.snapshot_steps = (10_000, 100_000)
    c.sweep = ((('model.strategy', 'model.k', 'train.batch_size'), ROWS),
               ('seed', (0, 1, 2, 3, 4)))
    c.population = True  # a row's seeds as one program: an accelerator benchmark
    if variant.startswith('veegan_'):
        c.model.architecture = 'unrolled'
        c.model.latent = 256  # U z_dim; V: 254 + 1 eps
        c.model.g_hidden, c.model.g_layers = 128, 2  # U: 2 x (Dense 128, tanh) -> Dense 2
        c.model.d_hidden, c.model.d_layers = 128, 2  # U: 2 x (Dense 128, tanh) -> Dense 1
        c.model.lstm_hidden = 128  # 'recurrent': LSTM units, the body's width
        c.train.num_steps = 100_000  # V: 100 epochs x 1,000 batches (U: 25,000)
        c.train.batch_size = 500  # V: 500 (U: 512)
        c.train.d_lr, c.train.g_lr = 1e-4, 1e-3  # U (V: 1e-3 for both, its own model)
        c.train.adam_b1 = 0.5  # U and V
        c.checkpoint.every = 25_000
        c.eval.snapshot_steps = (25_000,)  # U's whole budget
        c.sweep = ((('model.strategy', 'model.k', 'train.batch_size'), VEEGAN_ROWS),
                   ('seed', (0, 1, 2, 3, 4)))
    if variant == 'tiny':  # the ring, recurrent k = 2, shrunk to seconds (tests, a smoke run)
        c.model.strategy, c.model.k, c.sweep = 'recurrent', 2, ()
        c.model.g_hidden, c.model.g_layers, c.model.d_hidden, c.model.lstm_hidden = 8, 2, 8, 6
        c.model.maxout_pieces, c.model.mb_kernels = 2, 3
        c.train.num_steps, c.train.batch_size = 4, 8
        c.train.iterations_per_call = c.train.log_every = c.checkpoint.every = 2
        c.eval.num_samples, c.eval.snapshot_steps = 50, (2,)
    return c
