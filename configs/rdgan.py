"""Recurrent-discrimination GAN on MNIST (paper section 3.2, docs/reference_notes.md section 2).

  python launch.py --config=configs/rdgan.py --workdir=runs/rdgan            # the k sweep
  python launch.py --config=configs/rdgan.py --workdir=runs/rdgan_k4 \
      --config.sweep='()' --config.model.k=4                                 # one member
  python launch.py --config=configs/rdgan.py:tuned --workdir=runs/rdgan_tuned     # ours

The sweep trains k in {1, 2, 4, 8} x 3 seeds, each in workdir/k=K_seed=S, one after another, and
writes summary.md ('tuned' trains the 3 seeds of each k together as one population).

Variants (`configs/rdgan.py:NAME`); all but 'strategies' keep the paper's networks (generator
100 -> 256 tanh -> 256 tanh -> 784 sigmoid, discriminator a bidirectional LSTM of 256 units each
way):

- default: the paper's schedule with the numerics its code inherited from Keras 1 (= 'keras1'),
  and the paper's protocol: a 10 x 10 grid of samples from a z fixed before training, judged with
  2,000 samples, every 1,000 iterations. Under it the paper's k effect shows over seeds (k = 1
  collapses to 3 classes or fewer far more often than k = 4; docs/rdgan.md, ':keras1_seeds').
- 'tuned': one discriminator update per generator update, Adam b1 0.5, the generator's learning rate
  10x the discriminator's (1e-3 and 1e-4, with the reference's Keras decays 4e-4 and 1e-4), no L1
  penalties, and instance noise N(0, 0.1^2) on every image the discriminator reads. Why: MNIST's
  pixels sit at 0 and 1, the ends of the generator's sigmoid, so a discriminator that reads exact
  pixel values pushes the generator's output logits towards saturation, where their gradient
  vanishes: the samples turn to speckle and stop depending on z (collapse), or go blank. Under the
  noise a pixel of 0.001 looks like one of 0; the decays slow the generator down late in training,
  when it otherwise dies. Under the paper's schedule the discriminator wins within a few hundred
  iterations and the samples are faint blobs at 2,000 iterations (they sharpen by 10,000). Under
  this one, k = 4 reaches 8 classes and KL 0.44 in each of 3 seeds (the paper's own k = 4 figure: 9
  classes, KL 0.47), but k = 1 reaches the same KL, so the paper's k effect does not show; nor with
  k = 2 or 8, at 3x the iterations, or with a moving average of the generator (`train.g_ema`):
  k >= 4 gives the best single run and the worst collapses (docs/rdgan.md has the measurements).
  Under the paper's own schedule the effect does show (':keras1_seeds').
- 'reference': the paper's schedule (4 D updates per G update; Adam 3e-4 / 1e-4, b1 0.9, Keras
  decay 1e-4 / 4e-4; L1 1e-5 / 1e-6 on the weights).
- 'keras1': the default, by the name it had before it was the default: 'reference' with the
  numerics the paper's code inherited from Keras 1
  (`model.numerics = 'keras1'`: glorot / orthogonal kernels per gate, hard_sigmoid gates,
  clipped cross-entropy).
- 'keras1_seeds': 'keras1' over many seeds, the paper's budget (10,000 iterations) and protocol:
  k = 1 and k = 4 with 10 seeds each and k = 2 with 5, listed in the order they train (seed 0 of
  each k, then seed 1, ...) so a sweep stopped part way has balanced groups; a 10 x 10 grid of
  100 samples from a z fixed before training (the snapshot key) every 1,000 iterations, judged
  with 2,000 samples; one member after another (each resumes from its own workdir).
  `python launch.py --config=configs/rdgan.py:keras1_seeds --workdir=runs/rdgan_keras1_seeds`
- 'reference_seeds': the same protocol for 'reference' (Flax numerics), k = 1 and 4, 3 seeds.
  Measured: k = 1 collapsed in 3 of 3 seeds, k = 4 in none (7-9 classes, KL 0.33 against Keras 1
  numerics' 0.97): the k effect is stronger with these numerics.
- 'unrolled_seeds': the default at k = 1, seeds 0-2, with an unrolled discriminator
  (`train.unroll = 5`, second order, Metz et al. 2017): does unrolling cure the collapse k = 1
  shows under the paper's schedule? The same protocol as 'keras1_seeds'; compare with
  `python scripts/rd_verdict.py RUNS/keras1_seeds --against=RUNS/unrolled_seeds`.
- 'strategies': other ways to show the discriminator several samples, in the same harness and
  schedule as 'tuned'. The discriminator is one shared base network (Dense 256, LeakyReLU
  0.2, on the pixels) under one of `benchmark_models.StrategyDiscriminator`'s heads: plain (k = 1),
  minibatch discrimination (k = 1, Salimans et al.'s 100 kernels of 5), packing k = 4 (PacGAN:
  4 images concatenated into one input), recurrent k = 4 forward, recurrent k = 4 bidirectional
  (an LSTM of 256 units each way over the base network's features), and recurrent k = 1 (k alone
  varied). Every row sees 64 images per update, 3 seeds each, one after another. Measured
  (docs/rdgan.md, *Other ways to show the discriminator several samples*): minibatch
  discrimination is far ahead (10 classes in every seed, Frechet distance about 70 against about
  200 for packing and recurrent k = 4); the recurrent head does better at k = 1 (KL 0.14, FD 103)
  than at k = 4 (KL 0.29, FD 192) in every seed.
- 'unrolled_strategies': 'strategies' at plain k = 1 and recurrent k = 4 (forward), each with
  `train.unroll` 0, 5 (second order) and 5 (first order), seeds 0-2: the unrolled discriminator
  on the harness.
- 'tiny': 'tuned' shrunk to seconds (tests, a first smoke run).
"""

from bigran_jax.config import base_config

VARIANTS = ('default', 'tuned', 'reference', 'keras1', 'keras1_seeds', 'reference_seeds',
            'unrolled_seeds', 'strategies', 'unrolled_strategies', 'tiny')
# The paper's schedule (docs/reference_notes.md section 2), and those of it with Keras 1's numerics.
PAPER_SCHEDULE = ('default', 'reference', 'keras1', 'keras1_seeds', 'reference_seeds',
                  'unrolled_seeds')
KERAS1 = ('default', 'keras1', 'keras1_seeds', 'unrolled_seeds')
PROTOCOL = ('default', 'keras1', 'keras1_seeds', 'reference_seeds', 'unrolled_seeds')

# (model.k, seed) of the seeds variants, in training order: k = 1, 4 (and 2) for seed 0, then 1...
KERAS1_MEMBERS = tuple((k, s) for s in range(10) for k in ((1, 4, 2) if s < 5 else (1, 4)))
REFERENCE_MEMBERS = tuple((k, s) for s in range(3) for k in (1, 4))
UNROLLED_MEMBERS = tuple((1, s) for s in range(3))

STRATEGY_ROWS = (  # (model.strategy, model.k, model.bidirectional)
    ('plain', 1, False), ('minibatch', 1, False), ('packing', 4, False),
    ('recurrent', 4, False), ('recurrent', 4, True), ('recurrent', 1, False))
UNROLLED_STRATEGY_ROWS = (('plain', 1, False), ('recurrent', 4, False))
UNROLLED_STRATEGY_ORDERS = ((0, 'second'), (5, 'second'), (5, 'first'))  # train.unroll, its order


def get_config(variant: str = 'default'):
    if variant not in VARIANTS:
        raise ValueError(f'configs/rdgan.py: unknown variant {variant!r}; use one of {VARIANTS}')
    c = base_config()
    c.experiment = 'rdgan'
    c.model.k = 4  # samples per group read by the discriminator; k = 1 is a plain GAN
    c.model.latent = 100  # z ~ N(0, I) of size 100 (reference)
    c.model.g_hidden = 256  # generator: 100 -> 256 tanh -> 256 tanh -> 784 sigmoid (reference)
    c.model.d_hidden = 256  # discriminator: bidirectional LSTM, 256 units each way (reference)
    c.model.bidirectional = True  # reference: the LSTM reads each group both ways
    # 0: the LSTM reads the pixels (reference). > 0: a base network Dense(d_body) + LeakyReLU
    # under model.strategy's head (benchmark_models.StrategyDiscriminator), d_hidden its LSTM units.
    c.model.d_body = 0
    c.model.strategy = 'recurrent'  # 'recurrent' | 'packing' | 'plain' | 'minibatch' (d_body > 0)
    c.model.mb_kernels, c.model.mb_kernel_dim = 100, 5  # 'minibatch': Salimans et al.'s MNIST
    c.model.d_dropout = 0.0  # dropout on the discriminator's input pixels (reference: none)
    # The schedule below is 'tuned' (ours); the paper's (PAPER_SCHEDULE, the default among them)
    # overrides it further down.
    c.train.num_steps = 10_000  # 10 "epochs" of 1,000 iterations: the paper's figures 4-6
    c.train.batch_size = 64  # reference: 64 images, read as 64 / k groups of k
    c.train.d_updates = 1  # reference: 4 discriminator updates per generator update
    c.train.g_updates = 1
    c.train.d_lr = 1e-4  # reference: Adam 3e-4, Keras decay 1e-4
    c.train.d_decay = 1e-4  # the reference's decays (lr / (1 + decay * updates))
    c.train.g_lr = 1e-3  # reference: Adam 1e-4, Keras decay 4e-4
    c.train.g_decay = 4e-4
    c.train.adam_b1 = 0.5  # reference: 0.9 (Keras's default)
    c.train.d_l1 = 0.0  # reference: L1 1e-5 on the discriminator's weights
    c.train.g_l1 = 0.0  # reference: L1 1e-6 on the generator's weights
    c.train.real_label = 0.9  # one-sided label smoothing (reference)
    # Instance noise (Sonderby et al. 2016): N(0, std^2) added to every image the discriminator
    # reads, real and generated (reference: none).
    c.train.instance_noise = 0.1
    c.train.iterations_per_call = 50
    c.train.log_every = 500
    c.checkpoint.every = 2000
    c.eval.snapshot_steps = (1000, 2000, 5000, 10_000)
    c.eval.snapshot_samples = 2000  # judged at each snapshot: modes and KL as training goes
    c.sweep = (('model.k', (1, 2, 4, 8)), ('seed', (0, 1, 2)))
    c.population = True  # the seeds of a k as one program (the protocol variants: one by one)

    if variant in PAPER_SCHEDULE:
        c.train.instance_noise = 0.0
        c.train.d_updates = 4
        c.train.d_lr, c.train.g_lr = 3e-4, 1e-4
        c.train.adam_b1 = 0.9
        c.train.d_l1, c.train.g_l1 = 1e-5, 1e-6
    if variant in KERAS1:
        c.model.numerics = 'keras1'
    if variant in PROTOCOL:  # the paper's protocol
        c.eval.snapshot_steps = tuple(range(1000, 10_001, 1000))
        c.population = False
    if variant.endswith('_seeds'):
        members = {'keras1_seeds': KERAS1_MEMBERS, 'reference_seeds': REFERENCE_MEMBERS,
                   'unrolled_seeds': UNROLLED_MEMBERS}[variant]
        c.sweep = ((('model.k', 'seed'), members),)
    if variant == 'unrolled_seeds':
        c.train.unroll = 5
    if variant in ('strategies', 'unrolled_strategies'):
        c.model.d_body = 256
        c.sweep = ((('model.strategy', 'model.k', 'model.bidirectional'), STRATEGY_ROWS),
                   ('seed', (0, 1, 2)))
        c.population = False  # one member at a time: faster than a population on a CPU
    if variant == 'unrolled_strategies':
        c.sweep = ((('model.strategy', 'model.k', 'model.bidirectional'), UNROLLED_STRATEGY_ROWS),
                   (('train.unroll', 'train.unroll_order'), UNROLLED_STRATEGY_ORDERS),
                   ('seed', (0, 1, 2)))
    if variant == 'tiny':
        c.model.k, c.model.latent, c.model.g_hidden, c.model.d_hidden = 2, 8, 16, 8
        c.train.batch_size, c.train.num_steps, c.train.iterations_per_call = 8, 4, 2
        c.train.log_every, c.checkpoint.every = 2, 2
        c.eval.num_samples, c.eval.snapshot_steps, c.eval.snapshot_samples = 100, (2,), 20
        c.sweep = ()
    return c
