"""VGGish's audio front end: mono samples -> log-mel examples of 96 x 64.

As published with VGGish (Hershey et al., ICASSP 2017; the AudioSet release's input code):
the sound resampled to 16 kHz with resampy's default filter (kaiser_best), frames of 25 ms
(400 samples) every 10 ms (160 samples), a periodic Hann window, the magnitude of a
512-point FFT, 64 mel bands between 125 and 7500 Hz on the HTK mel scale (mel = 1127
ln(1 + f / 700)) with triangular weights and the DC bin left out, then log(mel + 0.01).
An example is 96 consecutive frames (0.96 s).

Which stretch of sound makes example k is the framing:
- 'release': second k alone, resampled on its own, and its first 0.96 s: what the AVE
  release's own version of VGGish's `wavfile_to_examples` does with a 10-second clip (it cuts
  the 16-bit WAV into ten 1-second pieces and frames each), so segment k's audio is heard in
  second k, like its frames (each second's last 40 ms is in no example).
- 'vggish': the whole stretch resampled at once and cut into examples back to back, at
  0.96 k s, as VGGish's stock input code frames a clip. Example k then drifts from second k:
  by 0.36 s at k = 9.
Computed in float64, as the reference does, returned as float32.
"""
import numpy as np
import resampy

SAMPLE_RATE = 16000
WINDOW = 400          # samples: 25 ms
HOP = 160             # samples: 10 ms
FFT = 512             # the power of two above the window
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96   # 0.96 s of frames per example
FRAMINGS = ('release', 'vggish')


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


def resample(samples, rate):
    """`samples` at `rate` Hz, at 16 kHz: resampy's default filter, as VGGish resamples."""
    if rate == SAMPLE_RATE or len(samples) == 0:
        return np.asarray(samples, dtype=np.float64)
    return resampy.resample(np.asarray(samples, dtype=np.float64), rate, SAMPLE_RATE)


def frame_examples(samples, count, step=EXAMPLE_FRAMES):
    """(count, 96, 64) log-mel examples of 16 kHz `samples`, example k from frame k * step;
    sound the examples need beyond `samples` is silence (zeros)."""
    frames = (count - 1) * step + EXAMPLE_FRAMES
    needed = (frames - 1) * HOP + WINDOW
    if len(samples) < needed:
        samples = np.concatenate([samples, np.zeros(needed - len(samples))])
    spec = log_mel(samples[:needed])                            # (frames, 64)
    starts = np.arange(count)[:, None] * step
    return spec[starts + np.arange(EXAMPLE_FRAMES)]              # (count, 96, 64)


def examples(samples, rate, count, framing='release'):
    """(count, 96, 64) float32 log-mel examples of mono `samples` (floats in [-1, 1]) at
    `rate` Hz (an integer), one per second from the first sample, framed by `framing` (one
    of FRAMINGS). Sound shorter than the examples need is padded with silence."""
    if framing == 'vggish':
        return frame_examples(resample(samples, rate), count).astype(np.float32)
    seconds = [np.asarray(samples[k * rate:(k + 1) * rate], dtype=np.float64)
               for k in range(count)]
    seconds = [np.concatenate([s, np.zeros(rate - len(s))]) if len(s) < rate else s
               for s in seconds]
    return np.concatenate([frame_examples(resample(s, rate), 1) for s in seconds]
                          ).astype(np.float32)
