"""Data: offline synthetic corpus, transcript text, tokenizer, features, TFDS builders, pipeline."""
