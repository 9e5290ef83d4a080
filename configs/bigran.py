"""BiGRAN on MNIST (paper section 4, docs/reference_notes.md section 3).

  python launch.py --config=configs/bigran.py --workdir=runs/bigran              # default
  python launch.py --config=configs/bigran.py:reference --workdir=runs/bigran_ref

Variants (`configs/bigran.py:NAME`); every one keeps the paper's sizes (m = 25, t = 4, hidden
128, k = 4, LSTM dropout 0.5):

- default: BiGAN's optimiser schedule (Donahue et al. 2017: Adam 2e-4, b1 0.5, one D update per
  E+G update, no decay) with two fidelity terms beside the adversarial loss, ALICE's cycle
  `0.1 * ||x - G(E(x))||^2` and `0.01 * KL(q(z | x) || N(0, I))`; two 512-unit ReLU layers
  before each decoder step's output; each step's adversarial term weighted s / t, so the late
  canvases count more; no dropout in the discriminator's image MLP (the paper: 0.5); 40,000
  iterations (see docs/bigran.md for the ablation).
- 'bigan': the paper's model (its decoder, its dropout) and adversarial objective alone, under
  the same schedule, 10,000 iterations.
- 'adversarial': 'bigan' with R1 on the real image (`train.r1 = 1`, `train.r1_on = 'image'`) and
  a moving average of E and G for evaluation (`train.g_ema = 0.999`), 80,000 iterations: the
  objective is still the paper's alone (docs/bigran.md, finding 9).
- 'reference': the paper's schedule (D Adam 3e-4 and E+G 1e-4, b1 0.9, Keras decay, 4 D updates
  per E+G update) and objective. Its discriminator wins within a few hundred iterations and the
  decoder collapses (docs/bigran.md, finding 1).
- 'keras1': 'reference' with the numerics the paper's code inherited from Keras 1
  (`model.numerics = 'keras1'`: glorot / orthogonal kernels per gate, hard_sigmoid gates, one
  dropout mask per gate, clipped cross-entropy).
- 'attention': the default with DRAW's attention (Gregor et al. 2015) on the canvas: the decoder
  writes a 5 x 5 patch per step through a window (DRAW's MNIST write) onto a learned dark
  background, over t = 8 steps instead of 4 (DRAW uses 64; 8 keeps the default's wall time). The
  encoder reads the whole image each step: DRAW's 2 x 2 glimpse (`model.read_n = 2`, steered by
  `model.read_steer`) starves it at t = 8 (docs/bigran.md). The attention canvases
  (`attention_samples.png` / `.gif`: each step's canvas with its write window) are among the
  evaluation's figures.
- 'steps': does the recurrence help? The default at t = 1, 2, 4 and 8 steps, 3 seeds each,
  10,000 iterations, members one after another (docs/bigran.md, "Does the recurrence help?").
  Nothing else changes with t: at t = 1 the step weights (s / t) are 1, the encoder and the
  decoder run once, and the discriminator reads one (image, latent) pair per sample: a one-step
  BiGAN with the same networks, losses and schedule.
- 'fast': the default at t = 1 (the same networks run one step: a one-step BiGAN), both
  learning rates doubled to 4e-4, E and G's moving average (`train.g_ema = 0.999`) evaluated,
  60,000 iterations. On full MNIST it reaches FD 10.5 in about a third of the default's training
  time and ends below it (docs/performance.md, "Time to quality"); on the 10,000-image embedded
  subset its discriminator overfits (FD 14 at 20,000 iterations, 40 at 60,000), so it is not the
  default. It does not draw step by step, and its encoder is the weaker for 1-NN.
- 'tiny': the default shrunk to seconds (tests, a first smoke run).

The paper trained 300 epochs of 1,000 iterations (its figures come from >= 120,000 iterations);
the default here is 40,000 iterations, about 30 minutes on a 2-core CPU.
"""

from bigran_jax.config import base_config

VARIANTS = ('default', 'bigan', 'adversarial', 'reference', 'keras1', 'attention', 'steps',
            'fast', 'tiny')


def get_config(variant: str = 'default'):
    if variant not in VARIANTS:
        raise ValueError(f'configs/bigran.py: unknown variant {variant!r}; use one of {VARIANTS}')
    c = base_config()
    c.experiment = 'bigran'
    c.model.latent = 25  # m (reference)
    c.model.t = 4  # recurrent depth of encoder and decoder: the paper's t (reference)
    c.model.hidden = 128  # units of the encoder's and decoder's LSTMs (reference)
    c.model.d_hidden = 128  # units of every discriminator layer (reference: 128)
    c.model.k = 4  # pairs per group read by the discriminator's sample LSTM (reference)
    # Dropout after each tanh layer of D's image MLP (reference: 0.5). Without it the samples are
    # sharper at the same budget and training runs faster (docs/bigran.md, finding 6).
    c.model.dropout = 0.0
    c.model.lstm_dropout = 0.5  # on D's LSTM inputs and recurrent state (reference code)
    # A ReLU layer of this many units between the decoder's LSTM and each step's linear map to
    # the canvas (0: none, the paper's decoder; see models.Decoder).
    c.model.decoder_mlp = 512
    c.model.decoder_layers = 2  # how many such ReLU layers
    # DRAW's attention (models.Encoder, models.Decoder; 0 / 'own' everywhere: the paper's networks).
    c.model.read_n = 0  # the encoder reads an N x N glimpse per step (0: the whole image)
    c.model.write_n = 0  # the decoder writes an N x N patch per step (0: the whole canvas)
    # What steers the glimpse: 'own' (the encoder's previous state; E a function of x alone) or
    # 'decoder' (DRAW's: a decoder run interleaved with E, its previous state steering the read,
    # the error image x - canvas read beside x). That decoder has G's architecture and weights
    # of its own, since the losses apply E and G each with its own parameters (models.Encoder).
    c.model.read_steer = 'own'
    # A learned initial canvas, one logit per pixel starting at this value (0: none, the paper's
    # canvas starts at logit 0); with a write window it sets the background (models.Decoder).
    c.model.canvas_bias = 0.0
    # Learn where the decoder starts, as DRAW does: its initial canvas (starting at canvas_bias)
    # and its LSTM's initial state (False: the paper's, zeros; models.Decoder).
    c.model.learned_start = False
    # Minibatch discrimination (Salimans et al. 2016) in the discriminator: this many kernels
    # compare each step's joint features across the batch (0: none, the paper's discriminator).
    c.model.d_minibatch = 0
    # A leaky-ReLU layer of this many units over each step's (latent, image) features in the
    # discriminator, before its sample LSTM (0: none, the paper's discriminator).
    c.model.d_joint = 0
    # Unroll the short recurrences (t = 4 steps, k = 4 samples) fully: the same function, about
    # 10% more iterations/s on a 2-core CPU for about 10 s of compile (benchmarks/throughput.py).
    c.model.unroll = 4
    c.train.num_steps = 40_000  # reference: 300 epochs x 1,000 iterations
    c.train.batch_size = 64  # reference: 64, in 16 groups of k = 4
    # BiGAN's schedule (Donahue et al. 2017); the reference's is in the 'reference' variant.
    c.train.d_updates = 1  # D updates per E+G update, each on a fresh batch (reference: 4)
    c.train.g_updates = 1
    c.train.d_lr = 2e-4  # reference: Adam 3e-4, Keras decay 1e-4 for D
    c.train.d_decay = 0.0
    c.train.g_lr = 2e-4  # reference: Adam 1e-4, Keras decay 4e-4 for E and G
    c.train.g_decay = 0.0
    c.train.adam_b1 = 0.5  # reference: 0.9 (Keras's default)
    c.train.d_l1 = 1e-6  # reference: L1 1e-6 on all weights
    c.train.g_l1 = 1e-6
    # Fidelity and regulariser terms (bigran_jax.losses; 0 = off, the paper's objective):
    c.train.cycle_x = 0.1  # ALICE's lambda * ||x - G(E(x))||^2 in the E+G loss
    c.train.cycle_steps = 'last'  # the cycle reads the 'last' canvas, or 'all' steps' mean
    c.train.cycle_z = 0.0  # latent cycle lambda * ||z - mu(E(G(z)))||^2 in the E+G loss
    c.train.kl = 0.01  # beta * KL(q(z | x) || N(0, I)) of the encoder's posterior, in the E+G loss
    # How each step's adversarial term counts: step s of t weighs (s / t) ** step_power, so the
    # late canvases count more (0: every step the same, the paper; bigran_jax.losses.step_weights).
    c.train.step_power = 1.0
    c.train.r1 = 0.0  # R1 (Mescheder et al. 2018): gamma / 2 * ||grad D(x, E(x))||^2 in D's loss
    # What R1's gradient is taken with respect to: the real 'pair' (the image and its latents) or
    # the 'image' alone (D then stays free to tell latents apart; see docs/bigran.md, finding 8).
    c.train.r1_on = 'pair'
    c.train.iterations_per_call = 50
    c.train.log_every = 500
    c.checkpoint.every = 2000
    c.eval.snapshot_steps = (1000, 5000, 10_000, 20_000, 30_000, 40_000)
    c.eval.snapshot_samples = 2000  # judged at each snapshot: modes, KL, confidence, FD

    if variant == 'fast':  # docs/performance.md, "Time to quality"
        c.model.t = 1
        c.train.d_lr = c.train.g_lr = 4e-4
        c.train.g_ema = 0.999  # evaluate E and G's moving average (it does not feed back)
        c.train.num_steps = 60_000
        c.eval.snapshot_steps = (1000, 5000, 10_000, 20_000, 40_000, 60_000)
    if variant in ('bigan', 'adversarial', 'reference', 'keras1'):
        c.model.dropout = 0.5  # the paper's discriminator
        c.train.num_steps = 10_000
        c.eval.snapshot_steps = (1000, 5000, 10_000)
        c.model.decoder_mlp = 0  # the paper's decoder
        c.train.cycle_x = c.train.kl = 0.0  # the paper's objective alone
        c.train.step_power = 0.0
    if variant == 'adversarial':
        c.train.r1, c.train.r1_on = 1.0, 'image'  # D smooth around real images, sharp in z
        c.train.g_ema = 0.999  # evaluate E and G's moving average (it does not feed back)
        c.train.num_steps = 80_000
        c.eval.snapshot_steps = (10_000, 40_000, 80_000)
    if variant in ('reference', 'keras1'):
        c.train.num_steps = 20_000
        c.train.d_updates = 4  # reference: 4 D updates per E+G update
        c.train.d_lr, c.train.d_decay = 3e-4, 1e-4  # reference: Adam 3e-4, Keras decay 1e-4
        c.train.g_lr, c.train.g_decay = 1e-4, 4e-4  # reference: Adam 1e-4, Keras decay 4e-4
        c.train.adam_b1 = 0.9
        c.eval.snapshot_steps = (1000, 5000, 10_000, 20_000)
    if variant == 'keras1':
        c.model.numerics = 'keras1'
    if variant == 'attention':
        # The encoder reads the whole image at every step, as the default's does: a 2 x 2
        # glimpse a step (DRAW's MNIST read, `model.read_n = 2`) leaves E too little of x at
        # t = 8 (class agreement 0.21 steered by its own state, 0.19 by a decoder's), and the
        # discriminator wins (docs/bigran.md, "Attention and DRAW").
        c.model.read_n = 0
        c.model.write_n = 5  # DRAW's MNIST write: a 5 x 5 patch per step
        # A dark learned background (sigmoid(-3) = 0.05): a patch leaves every other pixel at
        # c_0, so with c_0 = 0 the first canvases are grey wherever nothing was written yet.
        c.model.canvas_bias = -3.0
        # A 5 x 5 patch per step needs several steps to cover a digit (DRAW uses 64). At t = 8
        # an iteration costs about 2.2x the default's on a CPU, so 20,000 iterations take about
        # the default's 40,000's wall time (t = 16 would allow 10,000).
        c.model.t = 8
        c.model.unroll = 1  # 8 steps: unrolling buys less than it costs in compile time
        c.train.num_steps = 20_000
        c.eval.snapshot_steps = (1000, 5000, 10_000, 20_000)
    if variant == 'steps':
        c.train.num_steps = 10_000
        c.eval.snapshot_steps = (1000, 5000, 10_000)
        # Seed 0 of every t, then seed 1, ...: a sweep stopped part way has balanced rows.
        c.sweep = ((('model.t', 'seed'), tuple((t, s) for s in (0, 1, 2) for t in (1, 2, 4, 8))),)
    if variant == 'tiny':
        c.model.k, c.model.hidden, c.model.latent, c.model.t, c.model.unroll = 2, 8, 4, 3, 1
        c.model.d_hidden = 8
        c.model.decoder_mlp = 16
        c.model.d_minibatch = 3
        c.model.d_joint = 8
        c.train.batch_size, c.train.num_steps, c.train.iterations_per_call = 8, 4, 2
        c.train.log_every, c.checkpoint.every = 2, 2
        c.eval.num_samples, c.eval.snapshot_steps = 100, ()
    return c
