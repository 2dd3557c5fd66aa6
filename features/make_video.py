"""Small generated videos for tests and benchmarks (the repository ships no media).

A video shows a flat colour that can change at given seconds and plays a sine tone that
can start at a given second; lossless codecs (FFV1 picture, 16-bit PCM sound in Matroska)
keep every frame and sample exact, or MPEG-4 part 2 with AAC in .mp4 for a typical file.
"""
from fractions import Fraction

import av
import numpy as np

CODECS = {'lossless': ('ffv1', 'pcm_s16le'), 'mp4': ('mpeg4', 'aac')}


def write_video(path, seconds, fps=4, size=64, colors=((200, 40, 40),), color_changes=(),
                tone_hz=1000.0, tone_from=0.0, audio_rate=16000, kind='lossless',
                audio=True, video=True):
    """Write a `seconds`-long video to `path`, `size` pixels square or (width, height). The
    colour is colors[k] after the k-th second of `color_changes`; the tone plays from
    `tone_from` s (`tone_hz` None: silence)."""
    vcodec, acodec = CODECS[kind]
    width, height = (size, size) if isinstance(size, int) else size
    with av.open(str(path), 'w') as out:
        if video:
            vs = out.add_stream(vcodec, rate=fps)
            vs.width, vs.height = width, height
            vs.pix_fmt = 'yuv420p'
        if audio:
            aus = out.add_stream(acodec, rate=audio_rate, layout='mono')
        if video:
            for i in range(round(seconds * fps)):
                t = i / fps
                color = colors[sum(t >= c for c in color_changes)]
                picture = np.empty((height, width, 3), np.uint8)
                picture[:] = color
                frame = av.VideoFrame.from_ndarray(picture, format='rgb24')
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if audio:
            n = round(seconds * audio_rate)
            t = np.arange(n) / audio_rate
            wave = np.zeros(n) if tone_hz is None else \
                0.5 * np.sin(2 * np.pi * tone_hz * t) * (t >= tone_from)
            samples = (wave * 32767).astype(np.int16)
            step = aus.codec_context.frame_size or 1024
            for at in range(0, n, step):
                block = samples[at:at + step]
                frame = av.AudioFrame.from_ndarray(block[None], format='s16', layout='mono')
                frame.sample_rate, frame.pts = audio_rate, at
                frame.time_base = Fraction(1, audio_rate)
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path
