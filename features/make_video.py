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
                audio=True, video=True, picture=None, sound=None):
    """Write a `seconds`-long video to `path`, `size` pixels square or (width, height). The
    colour is colors[k] after the k-th second of `color_changes`, or frame i is picture(i)
    ((height, width, 3) uint8 RGB); the tone plays from `tone_from` s (`tone_hz` None:
    silence), or the sound is `sound`, (samples, channels) int16 at `audio_rate`."""
    vcodec, acodec = CODECS[kind]
    width, height = (size, size) if isinstance(size, int) else size
    with av.open(str(path), 'w') as out:
        if video:
            vs = out.add_stream(vcodec, rate=fps)
            vs.width, vs.height = width, height
            vs.pix_fmt = 'yuv420p'
        if audio:
            layout = 'mono' if sound is None or sound.shape[1] == 1 else 'stereo'
            aus = out.add_stream(acodec, rate=audio_rate, layout=layout)
        if video:
            for i in range(round(seconds * fps)):
                t = i / fps
                if picture is not None:
                    image = picture(i)
                else:
                    image = np.empty((height, width, 3), np.uint8)
                    image[:] = colors[sum(t >= c for c in color_changes)]
                frame = av.VideoFrame.from_ndarray(image, format='rgb24')
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if audio:
            if sound is None:
                n = round(seconds * audio_rate)
                t = np.arange(n) / audio_rate
                wave = np.zeros(n) if tone_hz is None else \
                    0.5 * np.sin(2 * np.pi * tone_hz * t) * (t >= tone_from)
                sound = (wave * 32767).astype(np.int16)[:, None]
            step = aus.codec_context.frame_size or 1024
            for at in range(0, len(sound), step):
                block = np.ascontiguousarray(sound[at:at + step])       # (samples, channels)
                frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format='s16',
                                                   layout=layout)
                frame.sample_rate, frame.pts = audio_rate, at
                frame.time_base = Fraction(1, audio_rate)
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path
