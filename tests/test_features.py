"""features/: from video files to the AVE release's features (log-mel front end, VGGish,
VGG-19 and its Keras weights, decoding, the resumable extraction)."""
import pickle
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from conftest import EXTRACT_FLAGS
from core.errors import UserError
from features import extract, logmel
from features.make_video import write_video
from features.vgg19 import VGG19Pool5, build_vgg19, keras_layer_names, read_keras_h5
from features.vggish import VGGish, build_vggish
from tools.extract_features import main as extract_main

RATE = logmel.SAMPLE_RATE


def tone(seconds, hz, start=0.0):
    t = np.arange(round(seconds * RATE)) / RATE
    return 0.5 * np.sin(2 * np.pi * hz * t) * (t >= start)


# ----------------------------------------------------------------------------- log-mel

def test_a_pure_tone_lands_in_the_mel_band_centred_nearest_to_it():
    edges = np.linspace(logmel.hertz_to_mel(125), logmel.hertz_to_mel(7500), 66)
    for hz in (300.0, 1000.0, 4000.0):
        spec = logmel.log_mel(tone(1, hz))
        nearest = np.abs(edges[1:-1] - logmel.hertz_to_mel(hz)).argmin()
        assert (spec.argmax(1) == nearest).all(), hz


def test_frames_and_examples_follow_the_vggish_definition():
    assert logmel.MEL.shape == (257, 64) and not logmel.MEL[0].any()   # DC in no band
    assert logmel.log_mel(np.zeros(400)).shape == (1, 64)               # 25 ms: one frame
    assert logmel.log_mel(np.zeros(16000)).shape == (98, 64)            # 1 + (16000-400)//160
    assert np.allclose(logmel.log_mel(np.zeros(400)), np.log(0.01))     # silence: log(offset)
    sound = tone(10, 1000, start=5.0)
    spec = logmel.log_mel(sound)
    # vggish: the stretch at once, example k is frames [96 k, 96 k + 96).
    vggish = logmel.examples(sound, 16000, 10, 'vggish')
    assert vggish.shape == (10, 96, 64) and vggish.dtype == np.float32
    for k in range(10):
        assert np.allclose(vggish[k], spec[96 * k:96 * k + 96], atol=1e-5)
    # release: second k on its own, its first 96 frames.
    release = logmel.examples(sound, 16000, 10, 'release')
    for k in range(10):
        assert np.allclose(release[k], logmel.log_mel(sound[16000 * k:16000 * (k + 1)])[:96],
                           atol=1e-5)
    # A tone from second 5: whole examples 5.. in the release's framing; with VGGish's
    # back-to-back framing example 5 (4.80 .. 5.76 s) is silent for its first 20 frames.
    silent = np.log(0.01)
    assert np.allclose(release[4], silent) and (release[5] > silent + 1).any(axis=1).all()
    heard = (vggish[5] > silent + 1).any(axis=1)
    assert not heard[:18].any() and heard[21:].all()
    # Short audio is padded with silence to the examples it needs.
    for framing in logmel.FRAMINGS:
        assert np.allclose(logmel.examples(np.zeros(100), 16000, 3, framing)[2], silent)


def test_the_release_path_resamples_each_second_with_resampy():
    """At another rate, each second is resampled on its own (resampy's default filter):
    the AVE release's patched wavfile_to_examples, written out here."""
    import resampy
    rate = 22050
    sound = np.sin(2 * np.pi * 700 * np.arange(3 * rate) / rate) * 0.4
    ours = logmel.examples(sound, rate, 3, 'release')
    for k in range(3):
        second = resampy.resample(sound[k * rate:(k + 1) * rate], rate, 16000)
        assert np.allclose(ours[k], logmel.log_mel(second)[:96], atol=1e-5)


# ----------------------------------------------------------------------------- networks

def keras_file(path, channels, drop=None):
    """A Keras-layout VGG-19 weights file (layer groups holding '<layer>/kernel:0' (H, W, I, O)
    and 'bias:0'), every convolution with `channels` outputs; `drop`: a layer left out."""
    rng = np.random.default_rng(0)
    kernels = {}
    with h5py.File(path, 'w') as f:
        f.attrs['layer_names'] = [n.encode() for n in keras_layer_names()]
        in_channels = 3
        for name in keras_layer_names():
            if name == drop:
                continue
            kernels[name] = (rng.standard_normal((3, 3, in_channels, channels)).astype('f4'),
                             rng.standard_normal(channels).astype('f4'))
            group = f.create_group(name).create_group(name)
            group['kernel:0'], group['bias:0'] = kernels[name]
            in_channels = channels
    return kernels


def test_keras_kernels_become_torch_convolutions(tmp_path):
    kernels = keras_file(tmp_path / 'tiny.h5', channels=2)
    state = read_keras_h5(tmp_path / 'tiny.h5', '--vgg19_weights')
    kernel, bias = kernels['block1_conv1']
    weight = state['features.0.weight']
    assert weight.shape == (2, 3, 3, 3)                     # (out, in, H, W) from (H, W, in, out)
    assert torch.equal(weight, torch.from_numpy(kernel).permute(3, 2, 0, 1))
    assert state['features.34.weight'].shape == (2, 2, 3, 3)   # block5_conv4
    # One output position by hand: out[o, y, x] = b[o] + sum K[h, w, i, o] * in[i, y+h-1, x+w-1].
    image = torch.randn(1, 3, 5, 5)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    conv.load_state_dict({'weight': weight, 'bias': state['features.0.bias']})
    y, x, o = 2, 1, 1
    by_hand = bias[o] + sum(kernel[h, w, i, o] * image[0, i, y + h - 1, x + w - 1].item()
                            for h in range(3) for w in range(3) for i in range(3))
    assert conv(image)[0, o, y, x].item() == pytest.approx(by_hand, rel=1e-5)


def test_a_weights_file_of_the_wrong_network_or_shape_is_one_line(tmp_path):
    keras_file(tmp_path / 'narrow.h5', channels=2)
    with pytest.raises(UserError, match=r'does not fit VGG-19: features.0.weight has shape '
                                        r'\(2, 3, 3, 3\), the network needs \(64, 3, 3, 3\)'):
        build_vgg19(str(tmp_path / 'narrow.h5'))
    keras_file(tmp_path / 'partial.h5', channels=2, drop='block5_conv4')
    with pytest.raises(UserError, match='not a Keras VGG-19 weights file: it has no layer '
                                        'block5_conv4'):
        build_vgg19(str(tmp_path / 'partial.h5'))
    torch.save({'features.0.weight': torch.zeros(64, 1, 3, 3)}, tmp_path / 'vggish.pth')
    with pytest.raises(UserError, match='is not VGG-19 weights: it lacks features.0.bias'):
        build_vgg19(str(tmp_path / 'vggish.pth'))
    torch.save({'fc.weight': torch.zeros(2, 2)}, tmp_path / 'other.pth')
    with pytest.raises(UserError, match='is not VGGish weights: it lacks features.0.weight'):
        build_vggish(str(tmp_path / 'other.pth'))
    (tmp_path / 'text.pth').write_text('weights\n')
    with pytest.raises(UserError, match=r'text.pth is not a weights file \(it is a text file\); '
                                        'give a .pth file of PyTorch weights'):
        build_vggish(str(tmp_path / 'text.pth'))


class Payload:
    def __reduce__(self):
        import os
        return os.system, ('touch PWNED',)


def test_a_weights_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open('evil.pth', 'wb') as f:
        pickle.dump({'features.0.weight': Payload()}, f, protocol=2)
    with pytest.raises(UserError, match='not a PyTorch weights file that loads as plain tensors'):
        build_vggish('evil.pth')
    assert not (tmp_path / 'PWNED').exists()


def test_vggish_has_the_parameter_names_and_shapes_of_the_port_users_download():
    shapes = {k: tuple(v.shape) for k, v in VGGish().state_dict().items()}
    assert shapes == {
        'features.0.weight': (64, 1, 3, 3), 'features.0.bias': (64,),
        'features.3.weight': (128, 64, 3, 3), 'features.3.bias': (128,),
        'features.6.weight': (256, 128, 3, 3), 'features.6.bias': (256,),
        'features.8.weight': (256, 256, 3, 3), 'features.8.bias': (256,),
        'features.11.weight': (512, 256, 3, 3), 'features.11.bias': (512,),
        'features.13.weight': (512, 512, 3, 3), 'features.13.bias': (512,),
        'embeddings.0.weight': (4096, 12288), 'embeddings.0.bias': (4096,),
        'embeddings.2.weight': (4096, 4096), 'embeddings.2.bias': (4096,),
        'embeddings.4.weight': (128, 4096), 'embeddings.4.bias': (128,)}


def test_keras_weights_get_caffe_preprocessing_and_torchvision_weights_their_own():
    frame = torch.tensor([255, 0, 0], dtype=torch.uint8).expand(1, 224, 224, 3)   # red
    caffe, tv = VGG19Pool5(caffe=True), VGG19Pool5(caffe=False)
    caffe.features = tv.features = nn.Identity()      # see the network's input
    pixel = caffe(frame)[0, 0, 0]                      # BGR minus the BGR means, 0..255
    assert pixel.tolist() == pytest.approx([-103.939, -116.779, 255 - 123.68])
    pixel = tv(frame)[0, 0, 0]                         # RGB in [0, 1], ImageNet mean and std
    assert pixel.tolist() == pytest.approx([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225])


# ----------------------------------------------------------------------------- extraction

def test_each_video_gives_one_row_per_window_and_bad_videos_are_one_line_each(extracted,
                                                                              video_folder):
    out, status, errors = extracted
    assert status == 2
    for name, why in (('short.mkv', 'shorter than one second'), ('silent.mkv', 'no audio stream'),
                      ('soundonly.mkv', 'no video stream'),
                      ('notavideo.mp4', 'not a readable video'),
                      ('truncated.mp4', 'not a readable video')):
        lines = [e for e in errors if name in e and why in e]
        assert len(lines) == 2, (name, errors)   # as it happens, and in the list at the end
    assert errors[-1] == f'error: 5 of 7 videos failed (listed above); the others are in {out}'
    rows = extract.read_videos_txt(out / 'videos.txt')
    assert [(r, start, end, f.rsplit('/', 1)[1]) for r, start, end, f in rows] == [
        (0, 0, 10, 'long.mp4'), (1, 10, 20, 'long.mp4'), (2, 20, 25, 'long.mp4'),
        (3, 0, 10, 'shift.mkv')]
    with h5py.File(out / 'audio_feature.h5') as a, h5py.File(out / 'visual_feature.h5') as v:
        assert a['avadataset'].shape == (4, 10, 128) and a['avadataset'].dtype == np.float32
        assert v['avadataset'].shape == (4, 10, 7, 7, 512)
        assert '"weights": "random"' in v['avadataset'].attrs['extraction']
        audio, visual = a['avadataset'][2], v['avadataset'][2]
    # long.mp4's last window: 5 s of video, then its last slide frozen and silence.
    assert np.array_equal(visual[5:], np.broadcast_to(visual[5], visual[5:].shape))
    assert np.array_equal(audio[6:], np.broadcast_to(audio[6], audio[6:].shape))
    assert not np.array_equal(visual[1], visual[3])   # slides from 20 and 22.5 s


def test_features_change_where_the_video_does_and_nowhere_else(extracted):
    out = extracted[0]
    with h5py.File(out / 'audio_feature.h5') as a, h5py.File(out / 'visual_feature.h5') as v:
        audio, visual = a['avadataset'][3], v['avadataset'][3]   # shift.mkv
    changes = lambda x: [s for s in range(1, 10)
                         if np.abs(x[s] - x[s - 1]).max() > 1e-3 * np.abs(x).max()]
    assert changes(visual) == [3]      # the picture changes at second 3
    assert changes(audio) == [5]       # the tone starts at second 5 (the release's framing)


def test_an_interrupted_extraction_continues_to_the_same_files(tmp_path, monkeypatch, capsys):
    # Three videos of 1, 1 and 2 s in windows of 1 s, a part per video: 1 + 1 + 2 rows.
    for i, seconds in enumerate((1, 1, 2)):
        write_video(tmp_path / f'v{i}.mkv', seconds, colors=((50 * i, 90, 200),),
                    tone_hz=300 + 200 * i)
    argv = [str(tmp_path / f'v{i}.mkv') for i in range(3)] + [
        '--segments', '1', '--chunk', '1', *EXTRACT_FLAGS]
    extract_main(argv + ['--out', str(tmp_path / 'whole')])

    saved = extract.Store.save_part

    def save_then_stop(self, first, results):
        saved(self, first, results)
        if first == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(extract.Store, 'save_part', save_then_stop)
    with pytest.raises(SystemExit) as stopped:
        extract_main(argv + ['--out', str(tmp_path / 'resumed')])
    assert stopped.value.code == 130
    assert sorted(p.name for p in (tmp_path / 'resumed' / '.extract').iterdir()) == [
        'extraction.json', 'part_0000000.h5', 'part_0000001.h5']
    monkeypatch.setattr(extract.Store, 'save_part', saved)
    calls = []
    monkeypatch.setattr(extract.Extractor, '__call__',
                        lambda self, path, call=extract.Extractor.__call__:
                        calls.append(path) or call(self, path))
    extract_main(argv + ['--out', str(tmp_path / 'resumed')])
    assert [c.rsplit('/', 1)[1] for c in calls] == ['v2.mkv']   # only the video not yet saved
    for name in ('audio_feature.h5', 'visual_feature.h5'):
        with h5py.File(tmp_path / 'whole' / name) as a, h5py.File(tmp_path / 'resumed' / name) as b:
            assert a['avadataset'].shape[:2] == (4, 1)
            assert np.array_equal(a['avadataset'][()], b['avadataset'][()])
    assert ((tmp_path / 'whole' / 'videos.txt').read_text().replace('whole', '')
            == (tmp_path / 'resumed' / 'videos.txt').read_text().replace('resumed', ''))
    assert not (tmp_path / 'resumed' / '.extract').exists()
    # The same command once more has nothing left to do; other settings are refused.
    calls.clear()
    extract_main(argv + ['--out', str(tmp_path / 'resumed')])
    assert calls == []
    capsys.readouterr()
    with pytest.raises(SystemExit):
        extract_main(argv + ['--out', str(tmp_path / 'resumed'), '--frames_per_segment', '2'])
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'resumed'} already holds extracted features (made with "
        'frames_per_segment 1, asked 2); choose another folder, or delete them to extract these')
    # float16 files hold the same features, rounded (and a batch size changes nothing).
    extract_main(argv[:1] + argv[3:] + ['--out', str(tmp_path / 'half'), '--dtype', 'float16',
                                        '--frame_batch', '1'])
    for name in ('audio_feature.h5', 'visual_feature.h5'):
        with h5py.File(tmp_path / 'whole' / name) as a, h5py.File(tmp_path / 'half' / name) as b:
            assert b['avadataset'].dtype == np.float16
            assert np.allclose(b['avadataset'][0], a['avadataset'][0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('flags, message', [
    (['--frames_per_segment', '0'], '--frames_per_segment 0 is invalid: must be > 0'),
    (['--segments', '-1'], '--segments -1 is invalid: must be > 0'),
    (['--chunk', '0'], '--chunk 0 is invalid: must be > 0'),
    (['--vgg19_weights', 'nowhere.h5'], "--vgg19_weights nowhere.h5 not found; give 'keras', "
                                        "'imagenet' or the path of a weights file"),
    (['--vggish_weights', 'nowhere.pth'],
     "--vggish_weights nowhere.pth not found; give 'download' or the path of a weights file"),
])
def test_bad_flags_are_one_line(flags, message, video_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        extract_main([str(video_folder / 'shift.mkv'), '--out', str(tmp_path), *flags])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == f'error: {message}'
    assert list(tmp_path.iterdir()) == []   # nothing written

def test_one_extraction_per_folder(video_folder, tmp_path, capsys):
    import os

    from core.lock import hold
    held = hold(tmp_path / '.extract.lock', 'busy')   # as another extraction would
    with pytest.raises(SystemExit) as e:
        extract_main([str(video_folder / 'shift.mkv'), '--out', str(tmp_path), *EXTRACT_FLAGS])
    held.close()
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f'error: {tmp_path} is in use by another extraction (PID {os.getpid()}); wait for it '
        'to end, or choose another folder')


# ----------------------------------------------------------------------------- hostile files

def extract_quietly(argv, capsys):
    """(exit status, stderr lines) of extract_features on `argv`."""
    capsys.readouterr()
    try:
        extract_main([str(a) for a in argv])
        status = 0
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err.splitlines()


def test_a_truncated_video_is_one_line_not_a_shorter_video(tmp_path, capsys):
    write_video(tmp_path / 'whole.mkv', 3.06)
    whole = (tmp_path / 'whole.mkv').read_bytes()
    (tmp_path / 'cut.mkv').write_bytes(whole[:len(whole) // 2])   # its header still says 3.06 s
    status, err = extract_quietly([tmp_path / 'whole.mkv', tmp_path / 'cut.mkv', '--out',
                                   tmp_path / 'out', *EXTRACT_FLAGS], capsys)
    assert status == 2
    assert err[0] == (f"error: {tmp_path / 'cut.mkv'}: truncated: its picture and sound end at "
                      "1.50 s, but the file says it is 3.06 s long; re-download or re-encode it")
    rows = extract.read_videos_txt(tmp_path / 'out' / 'videos.txt')
    assert [(start, end, Path(f).name) for _, start, end, f in rows] == [(0, 3.06, 'whole.mkv')]


def test_a_name_with_a_line_break_or_a_tab_is_refused_and_the_others_recorded(tmp_path, capsys):
    folder = tmp_path / 'videos'
    folder.mkdir()
    write_video(folder / 'good.mkv', 1)
    for name in ('two\nlines.mkv', 'a\ttab.mkv'):
        (folder / name).write_bytes((folder / 'good.mkv').read_bytes())
    status, err = extract_quietly([folder, '--out', tmp_path / 'out', *EXTRACT_FLAGS], capsys)
    assert status == 2
    for name in ('a\ttab.mkv', 'two\nlines.mkv'):
        said = ascii(str(folder / name))
        assert [line for line in err if said in line][0] == (
            f'error: {said}: its name holds a line break, tab or other control character, '
            'which videos.txt (one tab-separated line per row) cannot record; rename the file')
    assert err[-1].startswith('error: 2 of 3 videos failed')
    rows = extract.read_videos_txt(tmp_path / 'out' / 'videos.txt')
    assert [(r, Path(f).name) for r, _, _, f in rows] == [(0, 'good.mkv')]


def test_what_a_killed_extraction_leaves_behind_is_cleaned_by_the_next_run(tmp_path, capsys):
    """A kill while the final files are assembled leaves a temporary file; one while the
    parts are deleted, '.extract.done' and '.extract.lock'. The same command again (the
    work is done) deletes them and keeps the files."""
    write_video(tmp_path / 'clip.mkv', 1)
    argv = [tmp_path / 'clip.mkv', '--out', tmp_path / 'out', *EXTRACT_FLAGS]
    assert extract_quietly(argv, capsys)[0] == 0
    out = tmp_path / 'out'
    made = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(made) == sorted(extract.OUTPUTS)
    (out / '.visual_feature.h5.0123abcd.tmp').write_bytes(b'half a file')
    (out / '.extract.done').mkdir()
    (out / '.extract.done' / 'part_0000000.h5').write_bytes(b'\0' * 4096)
    (out / '.extract.lock').write_text('12345\n')
    assert extract_quietly(argv, capsys)[0] == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == made


def test_a_failed_extraction_leaves_no_folder_behind(video_folder, tmp_path, capsys):
    status, err = extract_quietly([video_folder / 'notavideo.mp4', '--out', tmp_path / 'out',
                                   *EXTRACT_FLAGS], capsys)
    assert status == 2 and err[-1] == 'error: none of the 1 videos could be used (each said ' \
        'why above)'
    assert not (tmp_path / 'out').exists()


# ----------------------------------------------------------------------------- the release's path

def index_colour(i):
    """A colour that says frame i's index through a lossy yuv420p round trip (steps of 8)."""
    return 8 * (i % 32) + 4, 8 * (i // 32) + 4, 100


def colour_index(picture):
    r, g, _ = picture.reshape(-1, 3).mean(0)
    return int(round((r - 4) / 8)) + 32 * int(round((g - 4) / 8))


def release_frames(n, seconds=10, per_segment=16):
    """The frames the AVE release's extractor averages in each second of a clip of n frames
    (its formula, written out: left edges on the grid of int(n / 10) frames a second)."""
    interval = int(n / seconds)
    return [sorted(int(l * interval + i / per_segment * interval) for i in range(per_segment))
            for l in range(seconds)]


@pytest.mark.parametrize('fps', [Fraction(25), Fraction(30000, 1001)], ids=['25 fps', '29.97 fps'])
def test_each_second_averages_exactly_the_release_s_frames(fps, tmp_path):
    from features.video import decode
    n = round(10 * fps)
    path = write_video(tmp_path / 'indexed.mkv', 10, fps=fps, size=32,
                       picture=lambda i: np.full((32, 32, 3), index_colour(i), np.uint8))
    windows = []
    decode(path, 16, 10, windows.append)
    [window] = windows
    used = [sorted(colour_index(window.frames[f]) for f, count in uses.items()
                   for _ in range(count)) for uses in window.uses]
    assert used == release_frames(n)
    if fps == 25:   # the grid of 25 frames a second: 0, 1, 3, 4, 6, 7, 9, 10, 12, 14, ...
        assert used[0][:10] == [0, 1, 3, 4, 6, 7, 9, 10, 12, 14]
    else:           # int(300 / 10) = 30 a second: second 9 is frames 270 .. 298 (8.99-9.94 s)
        assert used[9][0] == 270 and used[9][-1] == 298


def test_a_window_of_a_longer_video_is_that_clip_cut_out(tmp_path):
    """A 25 s video's window 10-20 s gets the frames a 10 s clip of those seconds would."""
    from features.video import decode
    fps = 25
    path = write_video(tmp_path / 'long.mkv', 25, fps=fps, size=32,
                       picture=lambda i: np.full((32, 32, 3), index_colour(i), np.uint8))
    windows = []
    decode(path, 16, 10, windows.append)
    middle = windows[1]
    used = [sorted(colour_index(middle.frames[f]) - 250 for f, count in uses.items()
                   for _ in range(count)) for uses in middle.uses]
    assert [w.first for w in windows] == [0, 10, 20] and used == release_frames(250)
    # The last window holds 5 s: the same grid over them, then its last frame, frozen.
    last = [sorted(colour_index(windows[2].frames[f]) - 500 for f, count in uses.items()
                   for _ in range(count)) for uses in windows[2].uses]
    assert last[:5] == release_frames(125, seconds=5) and last[9] == [124] * 16


def test_time_sampling_takes_the_frames_on_screen_at_the_midpoints(tmp_path):
    from features.video import decode
    path = write_video(tmp_path / 'indexed.mkv', 10, fps=25, size=32,
                       picture=lambda i: np.full((32, 32, 3), index_colour(i), np.uint8))
    windows = []
    decode(path, 16, 10, windows.append, sampling='time')
    used = [sorted(colour_index(windows[0].frames[f]) for f, count in uses.items()
                   for _ in range(count)) for uses in windows[0].uses]
    assert used[3] == [int((3 + (k + 0.5) / 16) * 25) for k in range(16)]


def test_a_textured_frame_is_resized_as_opencv_resizes_the_whole_frame(tmp_path):
    """The picture is cv2.resize(INTER_LINEAR) of the frame at its own resolution, not
    FFmpeg's bilinear scaler (which differs by grey levels on texture)."""
    import av
    import cv2

    from features.video import decode
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    path = write_video(tmp_path / 'texture.mkv', 1, fps=4, size=(320, 180),
                       picture=lambda i: texture)
    windows = []
    decode(path, 1, 1, windows.append)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        rgb = frame.to_ndarray(format='rgb24')                        # the decoded frame
        scaled = frame.to_ndarray(width=224, height=224, format='rgb24', interpolation='BILINEAR')
    ours = windows[0].frames[0]
    assert np.array_equal(ours, cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR))
    assert np.abs(ours.astype(int) - scaled).max() > 1      # the test tells the two apart


def test_a_44khz_stereo_sound_gives_the_examples_of_the_release_s_audio_path(tmp_path):
    """The release's audio path, written out: a 16-bit WAV / 32768, each second on its own,
    the channels averaged, resampy to 16 kHz, the log-mel of that second's first 0.96 s."""
    import resampy

    from features.video import decode
    rate, seconds = 44100, 3
    t = np.arange(seconds * rate) / rate
    pcm = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1250 * t)], 1)
    pcm = (pcm * 32767).astype(np.int16)                               # (samples, 2)
    path = write_video(tmp_path / 'stereo.mkv', seconds, fps=4, audio_rate=rate, sound=pcm)
    decoded = decode(path, 1, seconds, lambda window: None)
    assert decoded.rate == rate
    assert np.array_equal(decoded.sound, (pcm / 32768.0).mean(1))     # read as the WAV is
    ours = logmel.examples(decoded.window(0, seconds), decoded.rate, seconds, 'release')
    wav = pcm / 32768.0
    for k in range(seconds):
        second = resampy.resample(wav[k * rate:(k + 1) * rate].mean(1), rate, 16000)
        assert np.allclose(ours[k], logmel.log_mel(second)[:96], atol=1e-5), k
