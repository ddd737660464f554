"""The training set-up, written once: model, optimizer, schedule and the train state on a mesh.

  s = create_training_setup(config, mesh)                 # the initial state, placed on the mesh
  s = create_training_setup(config, mesh, abstract=True)  # its shapes only: nothing allocated
  step = steps.make_train_step(s.model, s.tx, s.schedule, s.mesh, s.shardings,
                               train_config=config.train, data_config=config.data)

The trainer, the benchmark and `compile_for` all start here, so what compile_for measures is the
state the trainer trains. The state is placed by the param-sharding rule `train.param_sharding`
(replicated by default); optimizer moments follow their parameter.
"""

import dataclasses
from typing import Any, Callable, Dict, Tuple, Union

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from echo_jax.models.building import build_model, example_batch
from echo_jax.parallel import sharding as sharding_lib
from echo_jax.training import optim


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 scalar: number of completed steps
  params: Any
  opt_state: Any
  rng: jax.Array             # base PRNG key (raw uint32); step s uses fold_in(rng, s)
  first_bad_step: jax.Array  # int32 scalar: first step with a non-finite loss/grad, -1 if none

  def resumable(self) -> Dict[str, Any]:
    """What a checkpoint stores besides the params."""
    return {"step": self.step, "opt_state": self.opt_state, "rng": self.rng}


def state_shardings(abstract_state: TrainState, mesh, tx: optax.GradientTransformation,
                    mode: Union[str, ml_collections.ConfigDict]) -> TrainState:
  """NamedShardings for every leaf of the train state under param-sharding rule `mode`
  (config.train, or a rule name: see parallel.sharding.param_shardings).

  Optimizer moments follow their parameter's sharding; counters and the RNG are replicated.
  """
  rep = sharding_lib.replicated(mesh)
  params = sharding_lib.param_shardings(mesh, abstract_state.params, mode)
  opt_state = optax.tree_map_params(
      tx, lambda _, s: s, abstract_state.opt_state, params,
      transform_non_params=lambda _: rep)
  return TrainState(step=rep, params=params, opt_state=opt_state, rng=rep, first_bad_step=rep)


def with_shardings(abstract_tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `abstract_tree` carrying `shardings` (what `jit.lower` takes)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_tree, shardings)


def _init_fn(model, tx: optax.GradientTransformation,
             config: ml_collections.ConfigDict) -> Callable[[jax.Array], TrainState]:
  """seed key -> initial state: params from `model.init`, fresh optimizer state, base RNG."""
  batch = example_batch(config, 1)

  def init(seed_key):
    init_key, base_key = jax.random.split(seed_key)
    params = model.init(init_key, batch)["params"]
    return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params),
                      rng=base_key, first_bad_step=jnp.full([], -1, jnp.int32))

  return init


def _seed_key(config: ml_collections.ConfigDict) -> jax.Array:
  return jax.random.PRNGKey(int(config.train.seed))


def abstract_train_state(model, tx: optax.GradientTransformation,
                         config: ml_collections.ConfigDict) -> TrainState:
  """`jax.eval_shape` of the initial state (the same init, never run)."""
  return jax.eval_shape(_init_fn(model, tx, config), _seed_key(config))


def create_train_state(model, tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
                       mesh) -> Tuple[TrainState, TrainState]:
  """(state, its shardings): the initial state computed directly into its shardings on `mesh`."""
  init = _init_fn(model, tx, config)
  seed_key = _seed_key(config)
  shardings = state_shardings(jax.eval_shape(init, seed_key), mesh, tx, config.train)
  state = jax.jit(init, out_shardings=shardings)(seed_key)
  return state, shardings


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
  """What every step factory takes. `state` holds arrays, or with `abstract=True`
  ShapeDtypeStructs that carry their shardings."""
  model: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  mesh: Any
  state: TrainState
  shardings: TrainState


def create_training_setup(config: ml_collections.ConfigDict, mesh, *,
                          abstract: bool = False) -> TrainingSetup:
  """The model, optimizer and schedule of `config` and its initial train state on `mesh`.

  config.model.vocab_size must be resolved (data.tokenizer.resolve_vocab_size or
  expected_vocab_size).
  """
  model = build_model(config)
  tx = optim.make_optimizer(config.train)
  schedule = optim.learning_rate_schedule(config.train)
  if abstract:
    shapes = abstract_train_state(model, tx, config)
    shardings = state_shardings(shapes, mesh, tx, config.train)
    state = with_shardings(shapes, shardings)
  else:
    state, shardings = create_train_state(model, tx, config, mesh)
  return TrainingSetup(model=model, tx=tx, schedule=schedule, mesh=mesh, state=state,
                       shardings=shardings)
