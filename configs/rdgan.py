"""Recurrent-discrimination GAN on MNIST (paper section 3.2, reference notes section 2).

  python launch.py --config=configs/rdgan.py --workdir=runs/rdgan            # the k sweep
  python launch.py --config=configs/rdgan.py --workdir=runs/rdgan_k4 \
      --config.sweep='()' --config.model.k=4                                 # one member

The sweep trains k in {1, 2, 4, 8} x 3 seeds, each in workdir/k=K_seed=S, and writes summary.md;
the 3 seeds of each k train together as one population (--config.population=False: one by one).
"""

from bigran_jax.config import base_config


def get_config():
    c = base_config()
    c.experiment = 'rdgan'
    c.model.k = 4  # samples per group read by the discriminator; k = 1 is a plain GAN
    c.model.latent = 100  # z ~ N(0, I) of size 100 (reference)
    c.model.g_hidden = 256  # generator: 100 -> 256 tanh -> 256 tanh -> 784 sigmoid (reference)
    c.model.d_hidden = 256  # discriminator: bidirectional LSTM, 256 units each way (reference)
    c.train.num_steps = 10_000  # 10 "epochs" of 1,000 iterations: the paper's figures 4-6
    c.train.batch_size = 64  # reference: 64 images, read as 64 / k groups of k
    c.train.d_steps = 4  # reference: 4 discriminator updates per generator update
    c.train.g_steps = 1
    c.train.d_lr = 3e-4  # reference: Adam 3e-4, Keras decay 1e-4
    c.train.d_decay = 1e-4
    c.train.g_lr = 1e-4  # reference: Adam 1e-4, Keras decay 4e-4
    c.train.g_decay = 4e-4
    c.train.d_l1 = 1e-5  # reference: L1 1e-5 on the discriminator's weights
    c.train.g_l1 = 1e-6  # reference: L1 1e-6 on the generator's weights
    c.train.real_label = 0.9  # one-sided label smoothing (reference)
    c.train.iterations_per_call = 50
    c.train.log_every = 500
    c.checkpoint.every = 2000
    c.eval.snapshot_steps = (1000, 5000, 10_000)
    c.sweep = (('model.k', (1, 2, 4, 8)), ('seed', (0, 1, 2)))
    return c
