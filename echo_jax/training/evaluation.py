"""The trainer's evaluation pass: validation loss, token accuracy and WER/CER of greedy decoding.

WER/CER are scored by echo_jax.inference.scoring, as `evaluate` scores them, so a run's eval
numbers and `evaluate`'s on the same predictions agree.
"""

from typing import Callable, Dict, Iterable, List, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from echo_jax.data.tokenizer import ids_to_text
from echo_jax.inference import scoring
from echo_jax.parallel import sharding as sharding_lib
from echo_jax.training.host import fetch, to_host


def rates(references: List[str], hypotheses: List[str]) -> Dict[str, float]:
  """{"wer", "cer"} of the corpus (the eval metrics record only the two rates)."""
  scores = scoring.error_rates(references, hypotheses)
  return {"wer": scores["wer"], "cer": scores["cer"]}


def evaluate(config: ml_collections.ConfigDict, params, eval_step, generate, mesh, tokenizer,
             batches: Iterable[Mapping[str, np.ndarray]],
             ctc_generate: Optional[Callable] = None) -> Dict[str, float]:
  """Validation loss, teacher-forced token accuracy and (if enabled) WER/CER of greedy decoding;
  with `ctc_generate`, also the CTC loss and the WER/CER of CTC greedy decoding (ctc_wer,
  ctc_cer). Padding rows (valid False) are left out of every number."""
  totals = None
  references: List[str] = []
  hypotheses: List[str] = []
  ctc_hypotheses: List[str] = []
  examples = 0
  for local_batch in batches:
    device_batch, _ = sharding_lib.split_host_batch(local_batch)
    batch = sharding_lib.global_batch(device_batch, mesh)
    sums = eval_step(params, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    valid = to_host(batch["valid"]).astype(bool)
    examples += int(valid.sum())
    if config.eval.generate:
      tokens = to_host(generate(params, batch))
      targets = to_host(batch["decoder_target_tokens"])
      ctc_tokens = to_host(ctc_generate(params, batch)) if ctc_generate is not None else None
      for row in np.nonzero(valid)[0]:
        references.append(ids_to_text(tokenizer, targets[row]))
        hypotheses.append(ids_to_text(tokenizer, tokens[row]))
        if ctc_tokens is not None:
          ctc_hypotheses.append(ids_to_text(tokenizer, ctc_tokens[row]))
  if totals is None:
    raise ValueError(f"eval split {config.eval.split!r} produced no batches; check "
                     "config.eval.split and the prepared data.")
  totals = fetch(totals)
  count = max(float(totals["num_tokens"]), 1.0)
  result = {"loss": float(totals["loss_sum"]) / count,
            "token_accuracy": float(totals["num_correct"]) / count,
            "num_examples": float(examples)}
  if "ctc_loss_sum" in totals:
    result["ctc_loss"] = float(totals["ctc_loss_sum"]) / max(float(totals["num_labels"]), 1.0)
  if config.eval.generate:
    result.update(rates(references, hypotheses))
    if ctc_hypotheses:
      result.update({f"ctc_{k}": v for k, v in rates(references, ctc_hypotheses).items()})
    result["examples"] = [{"reference": r, "hypothesis": h}
                          for r, h in list(zip(references, hypotheses))[:3]]
  return result
