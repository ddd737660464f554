"""Offline diagnostics: the seed's report from a run's dumps, the pictures, attention maps.

- report.summarize(dumps) / report.format_report(summary)
- plots.plot_{rotary,features,attention,curves,theta}(out, ...); attention_maps.from_wave(...)
- python -m echo_jax.diagnostics {report,plot} ...

The in-step part lives in echo_jax.training, which the train step imports, so imports run one way
(diagnostics -> training, never back):

- training.diagnostics_collect.diagnostics_from(grads, params, updates, intermediates, batch=None)
  -> pytree (inside jit)
- training.diagnostics_dump.DiagnosticsWriter(workdir).write(step, tree) / .close();
  training.diagnostics_dump.load_run(run, steps)
- training.diagnostics_naming: the seed's dotted module names, shared by both sides
"""
