"""bigran_jax: Bi-Directional Generative Recurrent Adversarial Networks and recurrent
discrimination, in JAX and Flax.

What researchers call, importable from the package:

  import bigran_jax
  net, params = bigran_jax.pretrained.load()            # the shipped BiGRAN (a `BiGRAN`)
  mnist = bigran_jax.load_mnist('embedded')             # uint8 [N, 28, 28, 1] images
  ds = bigran_jax.load_data('idx', 'fashion', 'fashion_mnist')  # any [N, H, W, C] dataset
  bigran_jax.losses.bigran_g_loss(...)                  # every game's losses, pure functions
  bigran_jax.models.Encoder, bigran_jax.models.Decoder  # the Flax modules
  bigran_jax.classifier.shipped()                       # the pinned MNIST judge
"""

__version__ = '0.2.0'

from bigran_jax import classifier, losses, models, pretrained  # noqa: E402
from bigran_jax.data import MNIST, Dataset, load_data, load_mnist  # noqa: E402
from bigran_jax.experiments.bigran import BiGRAN  # noqa: E402

__all__ = ['BiGRAN', 'MNIST', 'Dataset', 'classifier', 'load_data', 'load_mnist', 'losses',
           'models', 'pretrained', '__version__']
