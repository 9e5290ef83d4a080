"""The public API: what `import bigran_jax` offers, one argument order, and bad input refused
with one error naming the argument."""

import inspect
import os

import jax
import numpy as np
import pytest

import bigran_jax
from bigran_jax import pretrained

KEY = jax.random.key(0)


@pytest.fixture(scope='module')
def shipped():
    net, params = pretrained.load()
    images = bigran_jax.load_mnist('embedded').test_images[:4]  # uint8 [4, 28, 28, 1]
    return net, params, images


def test_package_exposes_what_researchers_call():
    for name in ('BiGRAN', 'pretrained', 'losses', 'models', 'load_mnist', 'classifier',
                 'MNIST', '__version__'):
        assert hasattr(bigran_jax, name), name
    assert os.path.exists(os.path.join(os.path.dirname(bigran_jax.__file__), 'py.typed'))
    for method in ('encode', 'decode', 'reconstruct', 'sample', 'features'):
        signature = inspect.signature(getattr(bigran_jax.BiGRAN, method))
        assert signature.return_annotation is not inspect.Signature.empty, method
        assert all(p.annotation is not inspect.Parameter.empty
                   for p in signature.parameters.values() if p.name != 'self'), method


def test_one_argument_order_params_inputs_key():
    for method in ('encode', 'reconstruct', 'sample'):
        names = list(inspect.signature(getattr(bigran_jax.BiGRAN, method)).parameters)
        assert names[0] == 'self' and names[1] == 'params' and names[-1] == 'key', method
    assert list(inspect.signature(bigran_jax.BiGRAN.decode).parameters) == ['self', 'params', 'z']


def test_uint8_images_are_scaled_like_floats(shipped):
    net, params, images = shipped
    as_float = images.astype(np.float32) / 255.0
    for layout in (images, images[..., 0], images.reshape(4, 784)):
        np.testing.assert_allclose(net.encode(params, layout, KEY)[1],
                                   net.encode(params, as_float, KEY)[1], atol=1e-5)


@pytest.mark.parametrize('call,error,message', [
    (lambda n, p, x: n.encode(p, x[0], KEY), ValueError, r'x: .*got shape \(28, 28, 1\); add a '
                                                         r'batch axis'),
    (lambda n, p, x: n.encode(p, x.reshape(4, 28 * 28)[:, :700], KEY), ValueError,
     r'x: expected images'),
    (lambda n, p, x: n.encode(p, x.astype(np.float32), KEY), ValueError,
     r'x: float images must lie in \[0, 1\], got values in \[0, 255\]'),
    (lambda n, p, x: n.encode(p, x.astype(np.int32), KEY), TypeError, r'x: .*got dtype int32'),
    (lambda n, p, x: n.encode(p, x, 0), TypeError, r'key: expected a PRNG key'),
    (lambda n, p, x: n.encode({'d': {}}, x, KEY), ValueError, r"params: expected \{'g'"),
    (lambda n, p, x: n.decode(p, np.zeros((2, 25))), ValueError,
     r'z: expected latents \[B, t, latent\] = \[B, 4, 25\]'),
    (lambda n, p, x: n.sample(p, KEY, 3), TypeError, r'n is a PRNG key; the count comes before'),
    (lambda n, p, x: n.sample(p, 0, KEY), TypeError, r'n: expected a positive int'),
    (lambda n, p, x: n.reconstruct(p, x[:, :, :20], KEY), ValueError, r'x: expected images'),
])
def test_bad_input_is_one_named_error(shipped, call, error, message):
    net, params, images = shipped
    with pytest.raises(error, match=message):
        call(net, params, images)


def test_export_never_writes_into_the_package(tmp_path):
    before = sorted(os.listdir(pretrained.PACKAGE_DIR))
    with pytest.raises(ValueError, match='holds the weights shipped with the package'):
        pretrained.export(str(tmp_path), pretrained.PACKAGE_DIR)
    assert sorted(os.listdir(pretrained.PACKAGE_DIR)) == before
    assert 'directory' in inspect.signature(pretrained.export).parameters
    assert inspect.signature(pretrained.export).parameters['directory'].default is (
        inspect.Parameter.empty)
