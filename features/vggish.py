"""VGGish (Hershey et al., ICASSP 2017): a VGG-like network from a 0.96 s log-mel example to
a 128-d audio embedding, as the AVE release used it.

Input (B, 96, 64): 96 frames x 64 mel bands (features/logmel.py). Four conv blocks (3x3
convolutions, stride 1, padding 1, ReLU; 2x2 max pooling): 64 | 128 | 256, 256 | 512, 512
channels, leaving a 6 x 4 map of 512; flattened in (height, width, channel) order, as the
TensorFlow original did; then fully connected 12288 -> 4096 -> 4096 -> 128, each followed by
ReLU. The embedding is that last ReLU's output, without the AudioSet release's PCA and
8-bit quantisation: the raw embedding the AVE features are (>= 0, mostly zeros).

Parameter names are those of the PyTorch port of the original weights that users have
(`features.N`, `embeddings.N`; github.com/harritaylor/torchvggish, release v0.1), so its
file loads as it is.
"""
import torch
from torch import nn

from features.weights import cached_download, fill, load_state_dict

WEIGHTS_URL = 'https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth'
EMBEDDING_DIM = 128


def conv_blocks(in_channels, blocks):
    """VGG conv blocks as one Sequential: each block's convolutions then a 2x2 max pool."""
    layers = []
    for block in blocks:
        for channels in block:
            layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = channels
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def empty(network, **kwargs):
    """`network(**kwargs)` with uninitialised parameters (built on the meta device): every
    one is then loaded or initialised, so PyTorch's own initialisation would be wasted."""
    with torch.device('meta'):
        model = network(**kwargs)
    return model.to_empty(device='cpu')


def init_random(module):
    """Random weights that keep activations at a usable scale through a deep ReLU stack;
    returns `module`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return module


class VGGish(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = conv_blocks(1, [[64], [128], [256, 256], [512, 512]])
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM), nn.ReLU(inplace=True))

    def forward(self, examples):                        # (B, 96, 64) log-mel
        x = self.features(examples[:, None])            # (B, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).flatten(1)            # (B, 12288), TensorFlow's order
        return self.embeddings(x)                       # (B, 128)


def build_vggish(weights, flag='--vggish_weights'):
    """VGGish in eval mode with `weights`: 'random' (seeded by the caller), 'download'
    (the port's file, fetched to the torch hub cache on first use) or a path to that file."""
    model = empty(VGGish).eval()
    if weights == 'random':
        return init_random(model)
    path = cached_download(WEIGHTS_URL, flag) if weights == 'download' \
        else weights
    return fill(model, load_state_dict(path, flag), path, flag, 'VGGish')


@torch.no_grad()
def embed(model, examples, device, batch=64):
    """(N, 128) float32 embeddings of (N, 96, 64) float32 log-mel examples (numpy)."""
    out = [model(torch.from_numpy(examples[i:i + batch]).to(device)).cpu()
           for i in range(0, len(examples), batch)]
    return torch.cat(out) if out else torch.zeros(0, EMBEDDING_DIM)
