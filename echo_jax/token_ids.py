"""The special token ids, defined once: every tokenizer, the pipeline, the model and decoding agree
on them (pad 0 is also the CTC blank)."""

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
CTC_BLANK_ID = PAD_ID  # the pad id is never a label, so it doubles as the CTC blank
NUM_SPECIAL = 4
