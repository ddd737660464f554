"""The package's import graph: every module imports, module-level project imports form no cycle
(between modules, and between packages), and the layers hold (the model and data packages import
nothing from the layers above them)."""

import ast
import importlib
import os
import pkgutil

import echo_jax

UPPER_LAYERS = ("echo_jax.training", "echo_jax.inference", "echo_jax.benchmark",
                "echo_jax.diagnostics", "echo_jax.experiments", "echo_jax.compile_for",
                "echo_jax.train", "echo_jax.evaluate", "echo_jax.transcribe")
BASE_MODULES = ("echo_jax.errors", "echo_jax.token_ids")
# What each lower package may import from the project, besides itself.
ALLOWED = {
    "echo_jax.models": BASE_MODULES,
    "echo_jax.data": BASE_MODULES + ("echo_jax.config",),
}


def _modules():
  """{module name: source path} of every module of echo_jax (packages as their __init__)."""
  found = {"echo_jax": echo_jax.__file__}
  for info in pkgutil.walk_packages(echo_jax.__path__, prefix="echo_jax."):
    spec = importlib.util.find_spec(info.name)
    found[info.name] = spec.origin
  return found


def _within(name, prefix):
  return name == prefix or name.startswith(prefix + ".")


def _resolve(name, modules):
  """The longest project module `name` refers to (a function or class import names its module)."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def _module_level_imports(name, path, modules):
  """Project modules `name` imports at module level (not inside functions or classes)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  package = name if os.path.basename(path) == "__init__.py" else name.rpartition(".")[0]
  out = set()

  def visit(nodes):
    for node in nodes:
      if isinstance(node, ast.Import):
        for alias in node.names:
          out.add(_resolve(alias.name, modules))
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = package.split(".")
          parts = parts[:len(parts) - node.level + 1]
          base = ".".join(parts + ([node.module] if node.module else []))
        for alias in node.names:
          # `from pkg import mod` imports the module pkg.mod; `from mod import f` imports mod.
          out.add(_resolve(f"{base}.{alias.name}", modules))
      elif isinstance(node, (ast.If, ast.Try)):  # guarded imports still run at import time
        visit(node.body)
        visit(getattr(node, "orelse", []))
        for handler in getattr(node, "handlers", []):
          visit(handler.body)
        visit(getattr(node, "finalbody", []))
  visit(tree.body)
  out.discard(None)
  out.discard(name)
  return {m for m in out if _within(m, "echo_jax")}


def _graph():
  modules = _modules()
  return {name: _module_level_imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, stack)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node, [])
      if found:
        return found
  return None


def test_every_module_imports():
  for name in _modules():
    importlib.import_module(name)


def test_module_level_imports_have_no_cycle():
  graph = _graph()
  assert len(graph) > 50  # the walk found the package
  # A package's __init__ importing its own modules is the usual parent -> child edge; a child
  # importing the package back (through `from echo_jax.pkg import x`) resolves to the module x,
  # so parent -> child edges alone never make a cycle here.
  cycle = _cycle(graph)
  assert cycle is None, " -> ".join(cycle)


def _package(name):
  """echo_jax.<pkg> for a module of a subpackage; a top-level module stands for itself."""
  return ".".join(name.split(".")[:2])


def test_packages_import_each_other_one_way():
  graph = _graph()
  packages = {}
  for name, imports in graph.items():
    edges = packages.setdefault(_package(name), set())
    for target in imports:
      edges.add(_package(target))
  for name, edges in packages.items():
    edges.discard(name)  # a package importing its own modules is no edge between packages
  assert {"echo_jax.training", "echo_jax.diagnostics", "echo_jax.inference"} <= set(packages)
  cycle = _cycle(packages)
  assert cycle is None, " -> ".join(cycle)


def test_lower_layers_import_nothing_from_above():
  graph = _graph()
  bad = []
  for package, allowed in ALLOWED.items():
    for name, imports in graph.items():
      if not _within(name, package):
        continue
      for target in imports:
        if _within(target, package) or any(_within(target, a) for a in allowed):
          continue
        bad.append(f"{name} imports {target}")
  assert not bad, "\n".join(bad)


def test_the_upper_layers_are_known_modules():
  modules = _modules()
  for layer in UPPER_LAYERS:  # the layer rule above names real modules
    assert any(_within(m, layer) for m in modules), layer
