"""BiGRAN on MNIST (paper section 4, reference notes section 3).

  python launch.py --config=configs/bigran.py --workdir=runs/bigran

The reference trained 300 epochs of 1,000 iterations; the default here is 20 epochs, which a
2-core CPU runs in about an hour (raise train.num_steps for the full schedule).

  python launch.py --config=configs/bigran.py:bigan --workdir=runs/bigran_bigan

`:bigan` keeps the model and swaps the reference's optimiser schedule (D 3e-4 and E+G 1e-4, Adam
b1 0.9, Keras decay, 4 D updates per E+G update) for BiGAN's (Donahue et al. 2017: Adam 2e-4,
b1 0.5, one D update per E+G update). With the reference schedule the discriminator wins within a
few hundred iterations (D loss 1e-4) and the decoder collapses onto one image; see README.
"""

from bigran_jax.config import base_config


def get_config(variant: str = 'reference'):
    c = base_config()
    c.experiment = 'bigran'
    c.model.latent = 25  # m (reference)
    c.model.steps = 4  # t, recurrent depth of encoder and decoder (reference)
    c.model.hidden = 128  # units of every LSTM and MLP layer (reference)
    c.model.k = 4  # pairs per group read by the discriminator's sample LSTM (reference)
    c.model.dropout = 0.5  # after each tanh layer of D's image MLP (reference)
    c.model.lstm_dropout = 0.5  # on D's LSTM inputs and recurrent state (reference code)
    # Unroll the short recurrences (t = 4 steps, k = 4 samples) fully: the same function, about
    # 10% more iterations/s on a 2-core CPU for about 10 s of compile (benchmarks/throughput.py).
    c.model.unroll = 4
    c.train.num_steps = 20_000  # reference: 300 epochs x 1,000 iterations
    c.train.batch_size = 64  # reference: 64, in 16 groups of k = 4
    c.train.d_steps = 4  # reference: 4 D updates per E+G update, each on a fresh batch
    c.train.g_steps = 1
    c.train.d_lr = 3e-4  # reference: Adam 3e-4, Keras decay 1e-4 for D
    c.train.d_decay = 1e-4
    c.train.g_lr = 1e-4  # reference: Adam 1e-4, Keras decay 4e-4 for E and G
    c.train.g_decay = 4e-4
    c.train.d_l1 = 1e-6  # reference: L1 1e-6 on all weights
    c.train.g_l1 = 1e-6
    c.train.iterations_per_call = 50
    c.train.log_every = 500
    c.checkpoint.every = 2000
    c.eval.snapshot_steps = (1000, 5000, 10_000, 20_000)
    if variant == 'bigan':
        c.train.d_steps = 1  # BiGAN: one D update per E+G update
        c.train.d_lr = c.train.g_lr = 2e-4  # BiGAN: Adam 2e-4, b1 0.5, no decay
        c.train.d_decay = c.train.g_decay = 0.0
        c.train.adam_b1 = 0.5
    elif variant != 'reference':
        raise ValueError(f"configs/bigran.py: unknown variant {variant!r}; use 'reference' or "
                         "'bigan'")
    return c
