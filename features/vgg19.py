"""VGG-19 up to `block5_pool` (Simonyan & Zisserman, ICLR 2015): a 224 x 224 picture ->
a 7 x 7 x 512 map, the AVE release's visual feature of one frame.

Sixteen 3x3 convolutions (stride 1, padding 1, ReLU) in five blocks of 64, 64 | 128, 128 |
256 x 4 | 512 x 4 | 512 x 4 channels, each block ending in a 2x2 max pool. Module names
follow torchvision's `vgg19().features` (convolutions at indices 0, 2, 5, ..., 34), so its
ImageNet file loads as it is.

Two sources of weights, with the preprocessing each was trained with:
- Keras' `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`, which the AVE release used:
  'caffe' preprocessing, RGB -> BGR, minus the BGR means (103.939, 116.779, 123.68), no
  scaling. Kernels are stored (height, width, in, out) and become torch's (out, in, height,
  width); TensorFlow's convolution is a cross-correlation like torch's, so nothing flips.
- torchvision's ImageNet weights: RGB / 255, minus (0.485, 0.456, 0.406), divided by
  (0.229, 0.224, 0.225). A different training run: not numerically the release's features.
"""
from pathlib import Path

import h5py
import torch
from torch import nn

from core.errors import UserError
from features.vggish import conv_blocks, empty, init_random
from features.weights import cached_download, fill, load_state_dict

BLOCKS = [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]
KERAS_URL = ('https://github.com/fchollet/deep-learning-models/releases/download/v0.1/'
             'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5')
TORCHVISION_URL = 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'
IMAGE_SIZE = 224
MAP_SHAPE = (7, 7, 512)


def keras_layer_names():
    """Keras' names of the convolutions, in order: block1_conv1 ... block5_conv4."""
    return [f'block{b + 1}_conv{c + 1}'
            for b, block in enumerate(BLOCKS) for c in range(len(block))]


class VGG19Pool5(nn.Module):
    """uint8 RGB frames (B, 224, 224, 3) -> block5_pool maps (B, 7, 7, 512), channels last as
    Keras gives them; `caffe` chooses the preprocessing of the weights (see the module doc)."""

    def __init__(self, caffe=True):
        super().__init__()
        self.features = conv_blocks(3, BLOCKS)
        self.caffe = caffe
        if caffe:   # BGR order, BGR means, 0..255 scale
            self.mean, self.scale = (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)
            self.order = [2, 1, 0]
        else:
            self.mean = tuple(255 * m for m in (0.485, 0.456, 0.406))
            self.scale = tuple(1 / (255 * s) for s in (0.229, 0.224, 0.225))
            self.order = [0, 1, 2]

    def forward(self, frames):                                     # (B, 224, 224, 3) uint8 RGB
        x = frames.permute(0, 3, 1, 2)[:, self.order].float()      # (B, 3, 224, 224)
        mean, scale = (torch.tensor(v, device=x.device).view(1, 3, 1, 1)
                       for v in (self.mean, self.scale))
        # Channels-last convolutions: about 25% faster on the CPU here, and what cuDNN prefers.
        x = ((x - mean) * scale).contiguous(memory_format=torch.channels_last)
        return self.features(x).permute(0, 2, 3, 1)                # (B, 7, 7, 512)


def read_keras_h5(path, flag):
    """torchvision-named state dict of the convolutions in a Keras VGG-19 weights file."""
    try:
        f = h5py.File(path, 'r')
    except FileNotFoundError:
        raise UserError(f'{flag} {path} not found; give the path of a weights file') from None
    except OSError as e:
        raise UserError(f'{flag} {path} is not an HDF5 weights file ({e})') from None
    state = {}
    with f:
        # Keras files keep the layers at the top level, or under 'model_weights' when saved
        # with the whole model.
        root = f['model_weights'] if 'model_weights' in f else f
        convs = [i for i, m in enumerate(conv_blocks(3, BLOCKS)) if isinstance(m, nn.Conv2d)]
        for index, name in zip(convs, keras_layer_names()):
            if not isinstance(root.get(name), h5py.Group):
                raise UserError(f'{flag} {path} is not a Keras VGG-19 weights file: it has no '
                                f'layer {name}')
            arrays = []
            root[name].visititems(lambda _, obj: arrays.append(obj[()])
                                  if isinstance(obj, h5py.Dataset) else None)
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise UserError(f'{flag} {path}: layer {name} does not hold one kernel and one '
                                'bias, as a Keras convolution does')
            state[f'features.{index}.weight'] = torch.from_numpy(kernels[0]).permute(3, 2, 0, 1)
            state[f'features.{index}.bias'] = torch.from_numpy(biases[0])
    return state


def is_hdf5(path):
    try:
        with open(path, 'rb') as f:
            return f.read(8) == b'\x89HDF\r\n\x1a\n'
    except OSError:
        return False


def build_vgg19(weights, flag='--vgg19_weights'):
    """VGG19Pool5 in eval mode with `weights`: 'random' (seeded by the caller), 'keras' (the
    Keras file, fetched to the torch hub cache on first use), 'imagenet' (torchvision's file,
    likewise), or a path to a Keras .h5 or torchvision .pth file."""
    if weights == 'random':
        return init_random(empty(VGG19Pool5, caffe=True)).eval()
    if weights in ('keras', 'imagenet'):
        path = (cached_download(KERAS_URL, flag) if weights == 'keras'
                else cached_download(TORCHVISION_URL, flag, hash_prefix='dcbb9e9d'))
    else:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"{flag} {weights} not found; give 'keras', 'imagenet' or the path "
                            'of a weights file')
    keras = is_hdf5(path)
    state = read_keras_h5(path, flag) if keras else load_state_dict(path, flag)
    return fill(empty(VGG19Pool5, caffe=keras), state, path, flag, 'VGG-19').eval()
