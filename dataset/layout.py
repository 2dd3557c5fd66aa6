"""The data description, and the AVE feature release's layout: file names, keys, classes.

`DataSpec` is what a model needs to know of a data set (its classes, segments per video and
feature sizes) and what a checkpoint records of the data it was trained on. A loaded data
folder carries the spec its files describe; `AVE` is the AVE release's. Every public AVEL
repository expects the file names below in one data folder (README, "Data"); other data sets
in this layout may have other sizes (docs/datasets.md).
"""
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError


@dataclass(frozen=True)
class DataSpec:
    """The classes, segments and feature sizes of a data set. What is unknown is None: the
    classes of new videos' features (the checkpoint knows them), the class names of label
    files that do not name them."""
    num_classes: int          # C event classes (label columns C + 1: the last is background)
    num_segments: int         # T segments (seconds) per video
    audio_dim: int            # A: audio feature size per segment
    visual_shape: tuple       # (H, W, V): visual feature map per segment
    class_names: tuple = None  # the C names in label-column order

    def __post_init__(self):
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f'{len(self.class_names)} class names for {self.num_classes} classes')

    @property
    def visual_dim(self):
        return self.visual_shape[-1]

    # What each size is called in the one line that refuses data of another shape.
    WORDS = {'num_classes': 'event classes', 'num_segments': 'segments per video',
             'audio_dim': 'audio features of size', 'visual_shape': 'visual maps of shape'}

    def check(self, data, source):
        """Refuse `data` (another DataSpec) where a size of this spec, which `source` (a
        checkpoint) was trained on, differs; sizes unknown on either side are not compared."""
        for key, words in self.WORDS.items():
            mine, theirs = getattr(self, key), getattr(data, key)
            if mine is not None and theirs is not None and mine != theirs:
                raise UserError(f'{source} was trained on data with {words} {mine}, but these data '
                                f'have {theirs}; use a checkpoint trained on data of this shape')

    def renamed(self, data):
        """The first class that `data` names otherwise than this spec, or None."""
        if self.class_names is None or data.class_names is None:
            return None
        return next((c for c, (a, b) in enumerate(zip(self.class_names, data.class_names))
                     if a != b), None)

    def to_dict(self):
        """As a checkpoint stores it (plain values, for weights-only loading)."""
        return {'class_names': list(self.class_names), 'num_segments': self.num_segments,
                'audio_dim': self.audio_dim, 'visual_shape': list(self.visual_shape)}

    @classmethod
    def recorded(cls, saved):
        """The spec a checkpoint recorded as `saved` (to_dict's form), or, where it recorded
        none (versions before specs were recorded, all trained on the AVE release), AVE's.
        A ValueError if `saved` is not such a record."""
        if saved is None:
            return AVE
        ints = lambda values: all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        ok = (isinstance(saved, dict) and isinstance(saved.get('class_names'), list)
              and all(isinstance(n, str) for n in saved['class_names'])
              and ints([saved.get('num_segments'), saved.get('audio_dim')])
              and isinstance(saved.get('visual_shape'), list) and len(saved['visual_shape']) == 3
              and ints(saved['visual_shape']))
        if not ok:
            raise ValueError(f'not a data description: {str(saved)[:80]}')
        return cls(len(saved['class_names']), saved['num_segments'], saved['audio_dim'],
                   tuple(saved['visual_shape']), tuple(saved['class_names']))


# Index = label column, in order of first appearance in Annotations.txt.
CLASSES = (
    'Church bell', 'Male speech, man speaking', 'Bark', 'Fixed-wing aircraft, airplane',
    'Race car, auto racing', 'Female speech, woman speaking', 'Helicopter', 'Violin, fiddle',
    'Flute', 'Ukulele', 'Frying (food)', 'Truck', 'Shofar', 'Motorcycle', 'Acoustic guitar',
    'Train horn', 'Clock', 'Banjo', 'Goat', 'Baby cry, infant cry', 'Bus', 'Chainsaw', 'Cat',
    'Horse', 'Toilet flush', 'Rodents, rats, mice', 'Accordion', 'Mandolin',
)
# The AVE release: 28 classes, ten 1-second segments per video, a VGGish embedding (128)
# and a VGG-19 pool5 map (7 x 7 x 512) per segment.
AVE = DataSpec(num_classes=28, num_segments=10, audio_dim=128, visual_shape=(7, 7, 512),
               class_names=CLASSES)
BACKGROUND_NAME = 'background'   # the name of label column C: no audio-visual event

FEATURE_KEY = 'avadataset'
ORDER_KEY = 'order'

# Both names occur in the wild: the loaders of every public repo read the singular one,
# some READMEs say the plural. The first that exists wins.
AUDIO_FILES = ('audio_feature.h5', 'audio_features.h5')
VISUAL_FILE = 'visual_feature.h5'
LABELS_FILE = 'labels.h5'
MIL_LABELS_FILE = 'mil_labels.h5'
ORDER_FILES = {'train': 'train_order.h5', 'val': 'val_order.h5', 'test': 'test_order.h5'}
# Background-only videos, used by the weakly-supervised setting.
NOISY_AUDIO_FILE = 'audio_feature_noisy.h5'
NOISY_VISUAL_FILE = 'visual_feature_noisy.h5'
NOISY_LABELS_FILE = 'labels_noisy.h5'
# Cross-modality localization (docs/cml.md): 1 on each event segment (N, T); the visual maps
# averaged over their positions (N, T, V), derived from VISUAL_FILE where absent; and its
# own splits, which are not the ones above.
CLOSS_FILE = 'labels_closs.h5'
VISUAL_VEC_FILE = 'visual_feature_vec.h5'
MATCH_ORDER_FILES = {'train': 'train_order_match.h5', 'val': 'val_order_match.h5',
                     'test': 'test_order_match.h5'}

# Optional: the names of a data set's event classes, one per line in label-column order.
CLASSES_FILE = 'classes.txt'


def default_class_names(num_classes):
    """Class names of a data folder without classes.txt: AVE's for 28 classes, else class_i."""
    if num_classes == AVE.num_classes:
        return AVE.class_names
    return tuple(f'class_{c}' for c in range(num_classes))


REPO = Path(__file__).resolve().parents[1]
FEATURE_SOURCES = (
    'the AVE feature release of Tian et al. (ECCV 2018; Google Drive links in README.md, '
    f'"Data"), or synthetic data from `python -m dataset.synthetic --out DIR` run in {REPO}'
)

# The annotation release (Annotations.txt + the ECCV split lists); `dataset.labels`
# builds the label and order files above from them.
ANNOTATIONS_FILE = 'Annotations.txt'
SPLIT_FILES = {'train': 'trainSet.txt', 'val': 'valSet.txt', 'test': 'testSet.txt'}
