"""Pieces of the pitch-conditioning ablation study: interval statistics and test conditions."""
