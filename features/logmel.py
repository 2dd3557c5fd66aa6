"""VGGish's audio front end: 16 kHz mono samples -> log-mel examples of 96 x 64.

As published with VGGish (Hershey et al., ICASSP 2017; the AudioSet release's input code):
frames of 25 ms (400 samples) every 10 ms (160 samples), a periodic Hann window, the
magnitude of a 512-point FFT, 64 mel bands between 125 and 7500 Hz on the HTK mel scale
(mel = 1127 ln(1 + f / 700)) with triangular weights and the DC bin left out, then
log(mel + 0.01). An example is 96 consecutive frames (0.96 s); examples do not overlap.

Where example k starts is the framing:
- 'release': back to back, at 0.96 k s, as VGGish's input code frames a clip and as the AVE
  release's 10-second clips were framed (10 examples from 10 s). Example k then drifts from
  second k: by 0.36 s at k = 9, so a sound starting on a second boundary can be half in one
  example and whole in the next.
- 'aligned': at k s, so that segment k's audio is heard in second k, like its frames
  (each second's last 40 ms is in no example).
Computed in float64, as the reference does, returned as float32.
"""
import numpy as np

SAMPLE_RATE = 16000
WINDOW = 400          # samples: 25 ms
HOP = 160             # samples: 10 ms
FFT = 512             # the power of two above the window
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96   # 0.96 s of frames per example
FRAMINGS = {'release': 96, 'aligned': 100}   # frames from one example's start to the next


def hertz_to_mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(bands=MEL_BANDS, bins=FFT // 2 + 1, rate=SAMPLE_RATE,
               low=MEL_LOW_HZ, high=MEL_HIGH_HZ):
    """(bins, bands) weights turning a magnitude spectrum into mel bands."""
    bin_mel = hertz_to_mel(np.linspace(0.0, rate / 2, bins))
    edges = np.linspace(hertz_to_mel(low), hertz_to_mel(high), bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (center - lower)
    falling = (upper - bin_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0   # the DC bin belongs to no band
    return weights


MEL = mel_matrix()
HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)   # periodic


def log_mel(samples):
    """(frames, 64) log-mel spectrogram of 1-D float samples at 16 kHz (a 1-frame minimum
    is not padded: fewer than 400 samples give 0 frames)."""
    samples = np.asarray(samples, dtype=np.float64)
    count = 0 if len(samples) < WINDOW else 1 + (len(samples) - WINDOW) // HOP
    starts = np.arange(count)[:, None] * HOP
    frames = samples[starts + np.arange(WINDOW)] if count else np.zeros((0, WINDOW))
    spectrum = np.abs(np.fft.rfft(frames * HANN, FFT))          # (frames, 257)
    return np.log(spectrum @ MEL + LOG_OFFSET)                  # (frames, 64)


def examples(samples, count, framing='release'):
    """(count, 96, 64) float32 log-mel examples of `samples` (1-D, 16 kHz, in [-1, 1]);
    example k starts at frame k * FRAMINGS[framing] (10 ms per frame). Audio shorter than
    the examples need is padded with silence (zeros) first."""
    step = FRAMINGS[framing]
    frames = (count - 1) * step + EXAMPLE_FRAMES
    needed = (frames - 1) * HOP + WINDOW
    if len(samples) < needed:
        samples = np.concatenate([samples, np.zeros(needed - len(samples))])
    spec = log_mel(samples[:needed])                            # (frames, 64)
    starts = np.arange(count)[:, None] * step
    return spec[starts + np.arange(EXAMPLE_FRAMES)].astype(np.float32)   # (count, 96, 64)
