"""The AVE feature release as users download it: file names, keys, shapes and classes.

Every public AVEL repository expects these names in one data folder; see README.md
("Data layout") for where the files come from. Other data sets in this layout may have
other sizes: the loader reads the number of classes, segments and the feature shapes from
the files themselves (README, "Other datasets"); the sizes below are the AVE release's.
"""

NUM_SEGMENTS = 10          # ten 1-second segments per video
AUDIO_DIM = 128            # VGGish embedding per segment
VISUAL_SHAPE = (7, 7, 512)  # VGG-19 pool5 map per segment
NUM_CLASSES = 28           # event classes
BACKGROUND = 28            # label column / class index of "no audio-visual event"
# What a model needs to know of the AVE release (AVEData.sizes of a loaded folder).
AVE_SIZES = {'num_classes': NUM_CLASSES, 'audio_dim': AUDIO_DIM, 'visual_dim': VISUAL_SHAPE[-1]}

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

# Index = label column, in order of first appearance in Annotations.txt.
CLASSES = (
    'Church bell', 'Male speech, man speaking', 'Bark', 'Fixed-wing aircraft, airplane',
    'Race car, auto racing', 'Female speech, woman speaking', 'Helicopter', 'Violin, fiddle',
    'Flute', 'Ukulele', 'Frying (food)', 'Truck', 'Shofar', 'Motorcycle', 'Acoustic guitar',
    'Train horn', 'Clock', 'Banjo', 'Goat', 'Baby cry, infant cry', 'Bus', 'Chainsaw', 'Cat',
    'Horse', 'Toilet flush', 'Rodents, rats, mice', 'Accordion', 'Mandolin',
)
LABEL_NAMES = CLASSES + ('background',)
BACKGROUND_NAME = 'background'

# Optional: the names of a data set's event classes, one per line in label-column order.
CLASSES_FILE = 'classes.txt'


def default_class_names(num_classes):
    """Class names of a data folder without classes.txt: AVE's for 28 classes, else class_i."""
    if num_classes == NUM_CLASSES:
        return CLASSES
    return tuple(f'class_{c}' for c in range(num_classes))


# What a checkpoint records of the data it was trained on (AVEData.describe()); checkpoints
# written before it was recorded were all trained on the AVE release.
AVE_DESCRIPTION = {'class_names': list(CLASSES), 'num_segments': NUM_SEGMENTS,
                   'audio_dim': AUDIO_DIM, 'visual_shape': list(VISUAL_SHAPE)}

FEATURE_SOURCES = (
    'the AVE feature release of Tian et al. (ECCV 2018; Google Drive links in README.md, '
    '"Getting the real features"), or synthetic data from '
    '`python -m dataset.synthetic --out DIR`'
)

# The annotation release (Annotations.txt + the ECCV split lists); `dataset.labels`
# builds the label and order files above from them.
ANNOTATIONS_FILE = 'Annotations.txt'
SPLIT_FILES = {'train': 'trainSet.txt', 'val': 'valSet.txt', 'test': 'testSet.txt'}
