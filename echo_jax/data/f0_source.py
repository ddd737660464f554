"""Which utterance's F0 track the model is fed: its own, or another one's (a placebo).

The pitch-conditioning ablation needs a control that keeps everything a pitch-conditioned model
gets (an F0 track with a realistic level, contour and voicing pattern) but breaks the link
between that track and the audio. With `config.data.f0_source = "shuffled"` each utterance is
fed the F0 track of a different utterance of the same split, in training and in evaluation;
if such a model does as well as the one fed its own F0, the gain of pitch conditioning is not
about this utterance's pitch.

The donor of record `position` in a split of `size` records is the record at
(position + size // 2) % size: deterministic, never the record itself when size >= 2, the same
for every epoch, host and run. Its track is stretched onto this record's frame count by
nearest-neighbour resampling (`stretch_f0`), which keeps its values and its voicing (unvoiced
frames stay 0) and covers its whole contour from start to end; the log-mel and the frame count
stay the record's own. `evaluate --manifest` applies the same rule to the rows it evaluates;
`transcribe` of single files has no other utterance to take F0 from and feeds each file its own.
"""

import logging

import numpy as np

F0_SOURCES = ("own", "shuffled")


def donor_position(position: int, size: int) -> int:
  """The record whose F0 record `position` of a split of `size` records gets when shuffled."""
  position, size = int(position), int(size)
  if size < 1 or not 0 <= position < size:
    raise ValueError(f"position {position} is not in a split of {size} records")
  if size == 1:
    logging.warning("data.f0_source='shuffled' on a split of one record: it keeps its own F0 "
                    "(there is no other utterance to take it from)")
  return (position + size // 2) % size


def stretch_f0(f0: np.ndarray, frames: int) -> np.ndarray:
  """`f0` [M] resampled to `frames` values by nearest neighbour: frame t takes donor frame
  floor((t + 0.5) * M / frames). Values and voicing (zeros) are kept; float32."""
  f0 = np.asarray(f0, np.float32).reshape(-1)
  frames = int(frames)
  if frames <= 0:
    return np.zeros([0], np.float32)
  if f0.size == 0:
    return np.zeros([frames], np.float32)
  index = np.floor((np.arange(frames) + 0.5) * f0.size / frames).astype(np.int64)
  return f0[np.minimum(index, f0.size - 1)].copy()


def shuffled_tracks(tracks):
  """[donor track stretched to own length] for a list of per-utterance F0 tracks (the evaluated
  rows of a manifest, for instance): the same donor rule with their list as the split."""
  size = len(tracks)
  return [stretch_f0(tracks[donor_position(i, size)], np.asarray(track).size)
          for i, track in enumerate(tracks)]
