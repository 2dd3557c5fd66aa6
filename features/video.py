"""Decoding a video file (PyAV, FFmpeg inside its wheel): its sound as 16 kHz mono samples
and, for every one-second segment, the frames shown at evenly spaced instants.

Frame sampling: segment s (seconds [s, s + 1)) samples `per_segment` instants
s + (k + 0.5) / per_segment, k = 0 .. per_segment - 1, and takes at each the frame on screen
then (the last frame that started at or before it). A video with fewer frames per second
than that repeats frames; each distinct frame is resized and kept once, with the number
of instants that use it. Pictures are resized to 224 x 224 without cropping (FFmpeg's
bilinear scaler). Instants past the last frame see the last frame (a frozen picture);
sound past the end of the audio is silence.

Every problem with a file (not a video, no picture or no sound, corrupt, truncated: its
streams end more than TRUNCATED seconds before the length its container declares, too
short) is a VideoError: one line naming the file.
"""
import math
from dataclasses import dataclass, field

import av
import numpy as np

from core.errors import UserError
from features.logmel import SAMPLE_RATE
from features.vgg19 import IMAGE_SIZE

MIN_SECONDS = 1.0
TOLERANCE = 0.01   # seconds of container rounding ignored when counting segments
TRUNCATED = 0.5    # seconds missing from the length a container declares: a truncated file


class VideoError(UserError):
    """A video file that cannot be turned into features."""


@dataclass
class Segments:
    """The sampled frames of consecutive segments [first, first + count)."""
    first: int
    frames: list = field(default_factory=list)    # distinct (224, 224, 3) uint8 RGB frames
    uses: list = field(default_factory=list)      # per segment: {frame index: instants}


@dataclass
class Decoded:
    sound: np.ndarray     # (samples,) float32 in [-1, 1], 16 kHz mono, from second 0
    seconds: float        # the video's length
    segments: int         # whole or started seconds in it


def segment_count(seconds):
    """The segments (started seconds) of a video `seconds` long."""
    return max(1, math.ceil(seconds - TOLERANCE))


def open_video(path):
    try:
        container = av.open(str(path), metadata_errors='ignore')
    except FileNotFoundError:
        raise VideoError(f'{path}: no such file') from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f'{path}: not a readable video ({reason(e)})') from None
    if not container.streams.video:
        container.close()
        raise VideoError(f'{path}: has no video stream (a picture is needed for the visual '
                         'features)')
    if not container.streams.audio:
        container.close()
        raise VideoError(f'{path}: has no audio stream (sound is needed for the audio '
                         'features)')
    return container


def reason(e):
    """FFmpeg's own words for `e` (without the errno and the path PyAV adds)."""
    text = getattr(e, 'strerror', None) or str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


class FrameSampler:
    """Assigns sampling instants to decoded frames as they arrive, in time order."""

    def __init__(self, per_segment, segments_per_batch):
        self.per_segment = per_segment
        self.batch = segments_per_batch
        self.next = 0                       # index of the next instant to assign
        self.current = Segments(0)
        self.previous = None                # (frame, its converted picture or None)

    def instant(self, j):
        return j // self.per_segment + (j % self.per_segment + 0.5) / self.per_segment

    def picture(self):
        """Index in the current batch of the previous frame's picture, converting it on its
        first use in the batch (it is then the batch's last picture)."""
        frame, picture = self.previous
        if picture is None:
            picture = frame.to_ndarray(width=IMAGE_SIZE, height=IMAGE_SIZE, format='rgb24',
                                       interpolation='BILINEAR')
            self.current.frames.append(picture)
            self.previous = (frame, picture)
        return len(self.current.frames) - 1

    def assign(self, until):
        """Give the previous frame every instant before `until`; yield full batches."""
        while self.instant(self.next) < until:
            segment = self.next // self.per_segment
            if segment >= self.current.first + self.batch:
                yield self.current
                self.current = Segments(segment)
                self.previous = (self.previous[0], None)
            index = self.picture()
            local = segment - self.current.first
            while len(self.current.uses) <= local:
                self.current.uses.append({})
            self.current.uses[local][index] = self.current.uses[local].get(index, 0) + 1
            self.next += 1

    def add(self, frame, time):
        """A decoded frame starting at `time` seconds; yields completed batches."""
        if self.previous is None:
            self.previous = (frame, None)   # instants before the first frame see it
        yield from self.assign(time)
        self.previous = (frame, None)

    def finish(self, segments):
        """Assign the instants up to `segments` seconds to the last frame; yield the rest."""
        if self.previous is not None:
            yield from self.assign(segments)
        if self.current.uses:
            yield self.current


def decode(path, per_segment, segments_per_batch, on_frames):
    """Decode `path` in one pass. Calls `on_frames(Segments)` for every `segments_per_batch`
    consecutive segments (a window) as soon as their frames are known, up to the end of the
    window holding the video's last second; returns Decoded."""
    container = open_video(path)
    with container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        video.thread_type = 'AUTO'
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        resampler = av.AudioResampler(format='flt', layout='mono', rate=SAMPLE_RATE)
        sampler = FrameSampler(per_segment, segments_per_batch)
        chunks = []
        sound_start = None
        video_end = 0.0
        frame_count = 0
        rate = float(video.average_rate or video.guessed_rate or 25)
        try:
            for packet in container.demux(video, audio):
                for frame in packet.decode():
                    if packet.stream is audio:
                        if sound_start is None and frame.time is not None:
                            sound_start = frame.time - origin
                        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                        continue
                    time = (frame.time - origin) if frame.time is not None else frame_count / rate
                    frame_count += 1
                    video_end = max(video_end, time + (float(frame.duration * frame.time_base)
                                                       if frame.duration else 1 / rate))
                    for batch in sampler.add(frame, time):
                        on_frames(batch)
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except (av.error.FFmpegError, OSError, ValueError, MemoryError) as e:
            raise VideoError(f'{path}: corrupt or unreadable data ({reason(e)})') from None
        if frame_count == 0:
            raise VideoError(f'{path}: its video stream holds no decodable frame')
        sound = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        start = round((sound_start or 0.0) * SAMPLE_RATE)
        sound = (np.concatenate([np.zeros(start, np.float32), sound]) if start > 0
                 else sound[-start:])
        seconds = max(video_end, len(sound) / SAMPLE_RATE)
        if container.duration is not None:   # the container's own length, where it knows it
            declared = container.duration / 1e6
            if seconds < declared - TRUNCATED:
                raise VideoError(f'{path}: truncated: its picture and sound end at {seconds:.2f} '
                                 f's, but the file says it is {declared:.2f} s long; '
                                 're-download or re-encode it')
            seconds = min(seconds, declared) if seconds > 0 else seconds
        if seconds < MIN_SECONDS - TOLERANCE:
            raise VideoError(f'{path}: {seconds:.2f} s long, shorter than one second (one '
                             'segment); nothing to extract')
        segments = segment_count(seconds)
        windows_end = math.ceil(segments / segments_per_batch) * segments_per_batch
        for batch in sampler.finish(windows_end):
            on_frames(batch)
    return Decoded(sound=sound, seconds=seconds, segments=segments)
