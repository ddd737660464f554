"""In-step diagnostics (pytree of gradient/activation statistics), dumps, the seed's report, plots.

- collect.diagnostics_from(grads, params, updates, intermediates, batch=None) -> pytree (inside jit)
- dump.DiagnosticsWriter(workdir).write(step, tree) / .close(); dump.load_run(run, steps)
- report.summarize(dumps) / report.format_report(summary)
- python -m echo_jax.diagnostics {report,plot} ...
"""
