"""Loading trained runs, greedy/beam/joint CTC decoding, long-form stitching, error breakdowns."""
