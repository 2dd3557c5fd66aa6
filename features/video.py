"""Decoding a video file (PyAV, FFmpeg inside its wheel): its sound as the AVE release's
audio path read it, and for every one-second segment the frames to average.

Frames, `release` sampling (the default): as the AVE release's extractor chose them. For
each window of T seconds (the release's clips were one window of 10 s), with n the number
of frames in it and interval = int(n / T), second l takes the frames of index
int(l * interval + i / F * interval), i = 0 .. F - 1 (F = frames per segment, 16), counted
from the window's first frame: left edges on the frame grid, not timestamps. The last
window of a video holds only its remaining seconds c < T: interval = int(n / c), and its
seconds past the video's end see its last frame. A window with fewer frames than seconds
(under 1 frame per second) falls back to `time` sampling.
`time` sampling: second s takes the frame on screen at the instants s + (k + 0.5) / F,
k = 0 .. F - 1 (the last frame that started at or before each): the better choice for
variable-frame-rate video, whose frame grid is not a clock.
Each frame used is converted to RGB at its own resolution and resized to 224 x 224 with
OpenCV's cv2.resize, INTER_LINEAR, no crop (the release's resize); a frame used several
times is converted once and counted as often.

Sound, as VGGish's `wavfile_to_examples` read the release's audio (a 16-bit PCM WAV at the
stream's own rate): decoded to 16-bit samples at the stream's rate, divided by 32768, the
channels averaged (features/logmel.py resamples it). Sound past the end of the audio is
silence.

Every problem with a file (not a video, no picture or no sound, corrupt, truncated: its
streams end more than TRUNCATED seconds before the length its container declares, too
short) is a VideoError: one line naming the file.
"""
import bisect
import math
from dataclasses import dataclass, field

import av
import cv2
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
    sound: np.ndarray     # (samples,) float64 in [-1, 1], mono at `rate`, from second 0
    rate: int             # the audio stream's own sample rate (Hz)
    seconds: float        # the video's length
    segments: int         # whole or started seconds in it

    def window(self, first, count):
        """Seconds [first, first + count) of the sound (at `rate`)."""
        return self.sound[first * self.rate:(first + count) * self.rate]


SAMPLINGS = ('release', 'time')


def picture(frame):
    """A decoded frame as the network sees it: (224, 224, 3) uint8 RGB, the frame at its own
    resolution resized by cv2.resize with INTER_LINEAR."""
    return cv2.resize(frame.to_ndarray(format='rgb24'), (IMAGE_SIZE, IMAGE_SIZE),
                      interpolation=cv2.INTER_LINEAR)


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


class TimeSampler:
    """`time` sampling: assigns the instants s + (k + 0.5) / F to decoded frames as they
    arrive, in time order."""

    def __init__(self, per_segment, segments_per_batch):
        self.per_segment = per_segment
        self.batch = segments_per_batch
        self.next = 0                       # index of the next instant to assign
        self.current = Segments(0)
        self.previous = None                # (frame, its converted picture or None)

    def instant(self, j):
        return j // self.per_segment + (j % self.per_segment + 0.5) / self.per_segment

    def previous_index(self):
        """Index in the current batch of the previous frame's picture, converting it on its
        first use in the batch (it is then the batch's last picture)."""
        frame, converted = self.previous
        if converted is None:
            converted = picture(frame)
            self.current.frames.append(converted)
            self.previous = (frame, converted)
        return len(self.current.frames) - 1

    def assign(self, until):
        """Give the previous frame every instant before `until`; yield full batches."""
        while self.instant(self.next) < until:
            segment = self.next // self.per_segment
            if segment >= self.current.first + self.batch:
                yield self.current
                self.current = Segments(segment)
                self.previous = (self.previous[0], None)
            index = self.previous_index()
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

    def finish(self, windows_end, seconds):
        """Assign the instants up to `windows_end` seconds to the last frame; yield the rest."""
        if self.previous is not None:
            yield from self.assign(windows_end)
        if self.current.uses:
            yield self.current


class ReleaseSampler:
    """`release` sampling: the frames of a window are known when it ends (its frame count
    sets the grid), so the window's frames are kept, converted, until then."""

    def __init__(self, per_segment, segments_per_batch):
        self.per_segment, self.T = per_segment, segments_per_batch
        self.window = 0            # the window being filled
        self.frames = []           # its (time, picture) so far
        self.last = None           # the last picture of the window before

    def add(self, frame, time):
        """A decoded frame starting at `time` seconds; yields the windows it completes."""
        while time >= (self.window + 1) * self.T:
            yield self.close(self.T)
        self.frames.append((time, picture(frame)))

    def finish(self, windows_end, seconds):
        """The windows up to `windows_end` seconds; the video is `seconds` long."""
        while self.window * self.T < windows_end:
            yield self.close(min(self.T, seconds - self.window * self.T))

    def close(self, content):
        """The Segments of the current window, which has `content` seconds of video."""
        first = self.window * self.T
        n, F = len(self.frames), self.per_segment
        interval = int(n / content) if content > 0 else 0
        if interval >= 1:
            chosen = [[min(int(l * interval + i / F * interval), n - 1) for i in range(F)]
                      for l in range(self.T)]
        else:   # under one frame per second: the frame on screen at each instant
            times = [t for t, _ in self.frames]
            chosen = [[max(0, bisect.bisect_right(times, first + l + (i + 0.5) / F) - 1)
                       for i in range(F)] for l in range(self.T)]
        pictures = [p for _, p in self.frames] or [self.last]
        window = Segments(first)
        local = {}
        for indices in chosen:
            uses = {}
            for j in indices:
                j = min(j, len(pictures) - 1)
                if j not in local:
                    local[j] = len(window.frames)
                    window.frames.append(pictures[j])
                uses[local[j]] = uses.get(local[j], 0) + 1
            window.uses.append(uses)
        self.last, self.frames = pictures[-1], []
        self.window += 1
        return window


def decode(path, per_segment, segments_per_batch, on_frames, sampling='release'):
    """Decode `path` in one pass. Calls `on_frames(Segments)` for every `segments_per_batch`
    consecutive segments (a window) as soon as their frames are known (`sampling`: one of
    SAMPLINGS), up to the end of the window holding the video's last second; returns
    Decoded."""
    container = open_video(path)
    with container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        video.thread_type = 'AUTO'
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        sampler = (ReleaseSampler if sampling == 'release' else TimeSampler)(
            per_segment, segments_per_batch)
        pcm, resampler, rate = [], None, None
        sound_start = None
        video_end = 0.0
        frame_count = 0
        fps = float(video.average_rate or video.guessed_rate or 25)
        try:
            for packet in container.demux(video, audio):
                for frame in packet.decode():
                    if packet.stream is audio:
                        if resampler is None:   # 16-bit, at the stream's rate and channels
                            rate = frame.sample_rate
                            resampler = av.AudioResampler(format='s16p', layout=frame.layout.name,
                                                          rate=rate)
                        if sound_start is None and frame.time is not None:
                            sound_start = frame.time - origin
                        pcm += [f.to_ndarray() for f in resampler.resample(frame)]
                        continue
                    time = (frame.time - origin) if frame.time is not None else frame_count / fps
                    frame_count += 1
                    video_end = max(video_end, time + (float(frame.duration * frame.time_base)
                                                       if frame.duration else 1 / fps))
                    for batch in sampler.add(frame, time):
                        on_frames(batch)
            if resampler is not None:
                pcm += [f.to_ndarray() for f in resampler.resample(None)]
        except (av.error.FFmpegError, OSError, ValueError, MemoryError) as e:
            raise VideoError(f'{path}: corrupt or unreadable data ({reason(e)})') from None
        if frame_count == 0:
            raise VideoError(f'{path}: its video stream holds no decodable frame')
        rate = rate or SAMPLE_RATE
        sound = (np.concatenate(pcm, axis=1) / 32768.0).mean(0) if pcm else np.zeros(0)
        start = round((sound_start or 0.0) * rate)
        sound = np.concatenate([np.zeros(start), sound]) if start > 0 else sound[-start:]
        seconds = max(video_end, len(sound) / rate)
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
        for batch in sampler.finish(windows_end, seconds):
            on_frames(batch)
    return Decoded(sound=sound, rate=rate, seconds=seconds, segments=segments)
