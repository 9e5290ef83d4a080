"""bigran_jax: Bi-Directional Generative Recurrent Adversarial Networks and recurrent
discrimination, in JAX and Flax."""

__version__ = '0.1.0'
