"""Video: tracks across frames and cuts, filled gaps, steady codes, and single images as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from codeformer_nodes import RestoreOptions, restore_faces
from codeformer_nodes.pipeline.errors import OptionError
from codeformer_nodes.pipeline.video import VideoOptions, restore_video

from .conftest import TESTDATA
from .test_pipeline import RecordingNetwork, small_codeformer

DETECTOR = "retinaface_mobile0.25"
FRAME_BY_FRAME = VideoOptions(landmark_window=1, code_window=1, feature_window=1, max_gap=0)


@pytest.fixture(scope="module")
def options(helper_weights) -> RestoreOptions:
    """The default flow without the parse mask, which costs seconds a face and frame here."""
    return RestoreOptions(detector=DETECTOR, weights_dir=helper_weights, parse_mask=False)


def photo(name: str) -> np.ndarray:
    return np.array(Image.open(TESTDATA / "photos" / name).convert("RGB"))


def shifted(rgb: np.ndarray, dx: int) -> np.ndarray:
    return np.ascontiguousarray(np.roll(rgb, dx, axis=1))


def hide(rgb: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    covered = rgb.copy()
    covered[max(y1 - 30, 0) : y2 + 30, max(x1 - 30, 0) : x2 + 30] = 128
    return covered


def test_a_single_image_is_restored_exactly_as_today(options):
    rgb = photo("group_four.png")
    network = small_codeformer()
    today = restore_faces([rgb], network, options)
    (video,) = list(restore_video([rgb], network, options))  # default windows: codes from averaged logits
    assert torch.equal(video.images[0], today.images[0])
    assert [f.landmarks for f in video.faces] == [f.landmarks for f in today.faces]
    assert [f.track_id for f in video.faces] == [0, 1, 2, 3]


def test_tracks_keep_their_ids_and_a_cut_ends_them(options):
    four, small = photo("group_four.png"), photo("group_small.jpg")
    other = np.array(Image.fromarray(small).resize(four.shape[1::-1]))
    frames = [shifted(four, dx) for dx in (0, 1, 2)] + [other, other]
    results = list(restore_video(frames, RecordingNetwork(), options, FRAME_BY_FRAME))
    assert len(results) == 5
    ids = [sorted(face.track_id for face in result.faces) for result in results]
    assert ids[0] == ids[1] == ids[2] == [0, 1, 2, 3]
    assert ids[3] == ids[4] and min(ids[3]) >= 4, "after a cut, new tracks"
    first = {face.track_id: face.box[0] for face in results[0].faces}
    third = {face.track_id: face.box[0] for face in results[2].faces}
    assert all(abs(third[tid] - first[tid] - 2) < 2 for tid in first), "each id follows the same face"


def test_a_face_that_leaves_and_comes_back_keeps_its_id_and_short_gaps_are_filled(options):
    four = photo("group_four.png")
    leaving = restore_faces([four], RecordingNetwork(), options).faces[0]
    frames = [four] * 3 + [hide(four, leaving.box)] * 6 + [four] * 3 + [hide(four, leaving.box)] * 2 + [four] * 2
    results = list(restore_video(frames, RecordingNetwork(), options, VideoOptions(code_window=1, feature_window=1)))
    counts = [len(result.faces) for result in results]
    assert counts == [4] * 3 + [3] * 6 + [4] * 3 + [4] * 2 + [4] * 2, "a 2-frame miss is filled, 6 frames are not"
    assert all(sorted(f.track_id for f in r.faces) == [0, 1, 2, 3] for i, r in enumerate(results) if counts[i] == 4)
    filled = next(face for face in results[12].faces if face.track_id == 0)
    np.testing.assert_allclose(filled.landmarks, leaving.landmarks, atol=1e-3, err_msg="interpolated, between equals")
    untouched = hide(four, leaving.box)
    assert not torch.equal(results[12].images[0], torch.from_numpy(untouched / np.float32(255)))


def test_frames_without_faces_come_back_unchanged_and_the_clip_streams(options):
    blank = np.full((120, 160, 3), 90, np.uint8)
    pulled = []

    def frames():
        for index in range(12):
            pulled.append(index)
            yield blank

    unsplit = VideoOptions(code_window=1, feature_window=1)
    stream = restore_video(frames(), RecordingNetwork(), options, unsplit)
    for emitted, result in enumerate(stream):
        assert torch.equal(result.images[0], torch.from_numpy(blank / np.float32(255)))
        assert len(pulled) - emitted <= unsplit.latency + 1, "frames are not hoarded"
    assert emitted == 11


def test_logits_are_averaged_along_a_track(options):
    """Codes come from the mean logits of a track's frames: with three frames of one still face, the middle frame's
    codes are the argmax of the three frames' mean, the same as a single frame's only when they agree."""
    four = photo("group_four.png")
    network = small_codeformer()
    clip = [four, shifted(four, 1), four]
    one_face = RestoreOptions(detector=options.detector, weights_dir=options.weights_dir, face_selection=[0])
    codes_only = VideoOptions(landmark_window=1, code_window=3, feature_window=1, max_gap=0)
    steady = list(restore_video(clip, network, one_face, codes_only))
    assert [len(r.faces) for r in steady] == [1, 1, 1]
    # the window shifts inwards at the clip's ends: every frame takes the three frames' mean, so the first and the
    # last (the same crop) come out the same
    assert torch.equal(steady[0].images[0], steady[2].images[0])


class CodeSpy(torch.nn.Module):
    """A CodeFormer that remembers the logits it predicted and the codes it was asked to decode."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.logits, self.codes = network, [], []

    def encode(self, x):
        encoded = self.network.encode(x)
        self.logits.append(encoded.logits[0])
        return encoded

    def decode(self, encoded, codes, w, adain):
        self.codes.append(codes[0])
        return self.network.decode(encoded, codes, w, adain)


def test_a_track_keeps_its_codes_on_near_ties(options):
    """With a margin, a token keeps last frame's code unless another's averaged logit leads by more than the
    margin; without one, each frame takes the argmax of its window's mean logits."""
    four = photo("group_four.png").astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 12, (5, *four.shape))
    clip = [np.clip(four + n, 0, 255).astype(np.uint8) for n in noise]  # the grain of a film: codes move
    one_face = RestoreOptions(detector=options.detector, weights_dir=options.weights_dir, face_selection=[0])
    window = {"landmark_window": 1, "code_window": 3, "max_gap": 0}
    plain = CodeSpy(small_codeformer())
    list(restore_video(clip, plain, one_face, VideoOptions(code_margin=0, **window)))
    logits = torch.stack(plain.logits)
    starts = [0, 0, 1, 2, 2]  # three frames, centred but shifted inside the clip at its ends
    expected = [logits[start : start + 3].mean(dim=0).argmax(dim=-1) for start in starts]
    assert all(torch.equal(codes, want) for codes, want in zip(plain.codes, expected, strict=True))
    alone = logits.argmax(dim=-1)
    assert any(not torch.equal(codes, alone[0]) for codes in alone), "the clip should move some codes frame by frame"
    sticky = CodeSpy(small_codeformer())
    list(restore_video(clip, sticky, one_face, VideoOptions(code_margin=1e9, **window)))
    assert all(torch.equal(codes, sticky.codes[0]) for codes in sticky.codes)
    with pytest.raises(ValueError, match="code_margin"):
        VideoOptions(code_margin=-1)


class FeatureSpy(torch.nn.Module):
    """Stands in for a split CodeFormer: every feature of a face is its crop's mean; records, per call, what the
    encoder saw and what the decoder was given to fuse."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[float]] = []
        self.fused: list[list[float]] = []

    def encode(self, x):
        from codeformer_nodes.codeformer_arch import Encoded

        means = x.mean(dim=(1, 2, 3), dtype=torch.float64)
        self.seen.append(means.tolist())
        feature = means[:, None, None, None]
        return Encoded(
            lq_feat=feature.expand(-1, 1, 16, 16), skips={32: feature.expand(-1, 1, 32, 32)},
            logits=torch.zeros(x.shape[0], 256, 4),
        )  # fmt: skip

    def decode(self, encoded, codes, w, adain):
        self.fused.append(encoded.skips[32][:, 0, 0, 0].tolist())
        assert torch.equal(encoded.lq_feat[:, 0, 0, 0], encoded.skips[32][:, 0, 0, 0]), "one window for both"
        return torch.zeros(codes.shape[0], 3, 512, 512)


def test_features_are_averaged_along_a_track_and_not_across_a_cut(options):
    """The fusion input of each face is its features' mean over a centred window of its track, shifted inwards where
    the track starts or ends (here at a cut), and exactly its own with feature_window 1."""
    four, small = photo("group_four.png"), photo("group_small.jpg")
    other = np.array(Image.fromarray(small).resize(four.shape[1::-1]))
    brighter = [0, 6, 2, 9, 4]  # levels: each frame's features differ, and not along a line
    clip = [np.clip(four.astype(int) + level, 0, 255).astype(np.uint8) for level in brighter]
    clip += [np.clip(other.astype(int) + level, 0, 255).astype(np.uint8) for level in brighter]
    window = {"landmark_window": 1, "code_window": 1, "max_gap": 0}
    whole_frames = dataclasses.replace(options, chunk_size=8)  # one encode and one decode a frame
    spy = FeatureSpy()
    list(restore_video(clip, spy, whole_frames, VideoOptions(feature_window=3, **window)))
    seen = np.array(spy.seen[:5]), np.array(spy.seen[5:])  # each shot: (frames, faces), faces in a steady order
    for shot, fused in zip(seen, (spy.fused[:5], spy.fused[5:]), strict=True):
        starts = [0, 0, 1, 2, 2]  # three frames each, centred but inside the shot
        np.testing.assert_allclose(fused, [shot[start : start + 3].mean(axis=0) for start in starts], rtol=1e-12)
    alone = FeatureSpy()
    list(restore_video(clip, alone, whole_frames, VideoOptions(feature_window=1, code_window=3, max_gap=0)))
    assert alone.fused == alone.seen, "feature_window 1: each frame's own features"


def test_video_options_are_checked():
    with pytest.raises(ValueError, match="max_gap <= track_memory"):
        VideoOptions(max_gap=10, track_memory=5)
    with pytest.raises(TypeError, match="needs a CodeFormer"):
        list(restore_video([np.zeros((8, 8, 3), np.uint8)], RecordingNetwork(), RestoreOptions()))
    with pytest.raises(TypeError, match="feature_window=1"):
        only_features = VideoOptions(code_window=1, feature_window=3)
        list(restore_video([np.zeros((8, 8, 3), np.uint8)], RecordingNetwork(), RestoreOptions(), only_features))
    with pytest.raises(OptionError, match="feature_window must be a whole number of at least 1"):
        VideoOptions(feature_window=0)


def write_clip(path, frames: list[np.ndarray], fps: int = 25, audio_seconds: float = 0.5) -> None:
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = np.sin(np.arange(int(16000 * audio_seconds)) / 16000 * 2 * np.pi * 440).astype(np.float32)[None]
        chunk = av.AudioFrame.from_ndarray(samples * 0.3, format="fltp", layout="mono")
        chunk.sample_rate = 16000
        for packet in [*sound.encode(chunk), *sound.encode()]:
            out.mux(packet)


def test_a_video_file_keeps_its_frames_fps_and_audio(options, tmp_path):
    import av

    from codeformer_nodes.batch.imageio import WriteSettings
    from codeformer_nodes.batch.runner import run

    four = photo("group_four.png")[:640, :1200]
    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    write_clip(clip, [shifted(four, dx) for dx in range(6)], fps=24)
    sure = dataclasses.replace(options, confidence=0.97)  # at 0.8 a compressed frame may show a fifth "face"
    entries = run([clip], RecordingNetwork(), sure, tmp_path / "out", WriteSettings(), False, video=FRAME_BY_FRAME)
    assert entries[0]["frames"] == 6 and entries[0]["faces_restored"] == 24 and entries[0]["tracks"] == 4
    with av.open(str(tmp_path / "out" / "clip.mp4")) as restored, av.open(str(clip)) as original:
        assert restored.streams.video[0].average_rate == 24 and restored.streams.video[0].frames == 6
        assert len(restored.streams.audio) == 1
        assert restored.streams.audio[0].duration == original.streams.audio[0].duration, "audio copied as it was"
        first = next(restored.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        source = next(original.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(first - source).max() > 100, "faces restored (inverted by the stand-in)"
    assert np.abs(first[600:, :100] - source[600:, :100]).mean() < 4, "the rest re-encoded, nothing more"
