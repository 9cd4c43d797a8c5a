"""Length buckets without a compiler: bucket sizes, zero padding, outputs cut back."""

from __future__ import annotations

import numpy as np

from yellowstone.backends.lengths import LengthBuckets, bucket_sizes


def test_bucket_sizes_are_powers_of_two_up_to_the_range():
    assert bucket_sizes(1, 256) == [8, 16, 32, 64, 128, 256]
    assert bucket_sizes(1, 24) == [8, 16, 24]
    assert bucket_sizes(16, 64) == [16, 32, 64]
    assert bucket_sizes(3, 5) == [3, 5]  # at least two, so length-following outputs show


class Recorder:
    """A static build at one length: records what it was fed, returns a pooled and a per-token
    output."""

    def __init__(self, size):
        self.size, self.seen = size, []

    def run(self, feeds):
        self.seen.append(feeds)
        ids = feeds["ids"]
        assert ids.shape[1] == self.size
        return [ids.sum(1, keepdims=True), ids * 10]


def test_requests_pad_with_zeros_to_the_nearest_bucket_and_cut_back():
    builds = {8: Recorder(8), 16: Recorder(16)}
    model = LengthBuckets(builds, {"ids": 1, "mask": 1}, [[], [1]])
    ids, mask = np.arange(1, 6)[None], np.ones((1, 5), np.int64)
    pooled, tokens = model.run({"ids": ids, "mask": mask})
    fed = builds[8].seen[0]
    assert fed["ids"].tolist() == [[1, 2, 3, 4, 5, 0, 0, 0]]
    assert fed["mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]  # padding the mask says is padding
    assert pooled.tolist() == [[15]] and tokens.tolist() == [[10, 20, 30, 40, 50]]
    model.run({"ids": np.ones((1, 9), np.int64), "mask": np.ones((1, 9), np.int64)})
    assert len(builds[16].seen) == 1 and not builds[8].seen[1:]
