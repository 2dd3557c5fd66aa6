"""The methods: DMIN (Liu et al., IEEE TMM 2022), one file per part, and the methods of the
field's comparison table. Each method's module gives NAME, SETTINGS, MODEL_KEYS (the
config keys it is built from), build(model_args) and build_criterion(cfg, setting, C);
every model's forward(audio, visual) returns a dict of tensors, and predict(outputs) and
confidence(outputs) turn it into (B, T) classes and their probabilities."""
from model import avel, cmbs, cmran, dmin, psp
from model.criterion import total_loss

METHODS = {'dmin': dmin, 'avel': avel, 'psp': psp, 'cmran': cmran, 'cmbs': cmbs}
SETTINGS = ('supervised', 'weak')


def model_keys(model, setting):
    """The config keys method `model` is built from in `setting`."""
    keys = METHODS[model].MODEL_KEYS
    return keys[setting] if isinstance(keys, dict) else keys


def model_args(setting, spec, cfg):
    """The arguments a model is built from: the method (cfg['model']), the setting, the sizes
    it takes from the data's `spec` (a dataset.layout.DataSpec: event classes, audio width,
    visual map channels) and its method's MODEL_KEYS of config `cfg`. A checkpoint stores
    them and is rebuilt from them."""
    model = cfg.get('model', 'dmin')
    check = getattr(METHODS[model], 'check', None)
    if check is not None:
        check(cfg, spec)
    return {'model': model, 'setting': setting, 'num_classes': spec.num_classes,
            'audio_dim': spec.audio_dim, 'visual_dim': spec.visual_dim,
            'positions': spec.visual_shape[0] * spec.visual_shape[1],
            **{k: cfg[k] for k in model_keys(model, setting)}}


def build_model(args):
    """The model of a dict made by model_args (or read from a checkpoint: one without a
    method is DMIN's); it keeps the dict as `model.args`, which its checkpoints store."""
    args = {'model': 'dmin', **args}
    if not isinstance(args['model'], str) or args['model'] not in METHODS:
        raise ValueError(f"no method {args['model']!r}; the methods are {', '.join(METHODS)}")
    model = METHODS[args['model']].build(args)
    model.args = dict(args)
    return model


def build_criterion(cfg, setting, num_classes):
    """The criterion of cfg['model'] in `setting` for `num_classes` event classes; its
    weight_dict holds each loss term's weight."""
    return METHODS[cfg.get('model', 'dmin')].build_criterion(cfg, setting, num_classes)


def method_name(model):
    """The name a model's method goes by in logs and tables."""
    return METHODS[model.args['model']].NAME


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ['METHODS', 'SETTINGS', 'build_model', 'build_criterion', 'count_parameters',
           'method_name', 'model_args', 'total_loss']
