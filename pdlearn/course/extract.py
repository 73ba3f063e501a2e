"""Take a student's functions out of a solution cell of a submission, and nothing else.

    code, notes, tampering = extract(source, reserved={"checks", "pdl", "torch", ...})

Of the cell's top-level statements the grader keeps only function definitions, imports of
the modules a solution needs (torch, math, copy, numpy, functools, itertools, and pdlearn
but not its course package), and assignments of a literal (a number, a string, a tuple of
them) to a plain name; it drops the rest (prints, plots, other assignments: ``notes`` lists
them). The task's own functions must be written with ``def``, and their default values
must be literals, so that no library function can hide in a binding made in advance. What it keeps must pass a static scan, in the
function bodies too; a statement that fails it is *tampering* and the task scores zero:

- assigning to, or deleting, an attribute or item of anything but the function's own local
  variables (``checks.check_forward = ...``, ``pdl.q_sample = ...``), or a ``global`` statement;
- naming the checks or the course package (``checks``, ``.course``, ``.checks``), or modules
  that reach into the interpreter (sys, os, builtins, importlib, inspect, gc, ctypes, ...);
- calling setattr, delattr, getattr, exec, eval, compile, globals, locals, vars, open,
  __import__, type or get_ipython; any dunder name or attribute (``__dict__``, ``__globals__``);
- defining a class, or rebinding a name the pristine notebook defines (``reserved``).

What the scan cannot see (an alias of a module made in a local variable, then changed) the
guard catches at run time (``guard``): every call of a student's function checks that the
library, torch and the checks are unchanged.
"""
import ast

IMPORTABLE = {"torch", "math", "copy", "numpy", "functools", "itertools", "pdlearn"}
BLOCKED_MODULES = ("pdlearn.course", "pdlearn.checks", "pdlearn.assignments")
BLOCKED_NAMES = {"checks", "course", "sys", "os", "builtins", "importlib", "inspect", "gc", "ctypes", "subprocess",
                 "setattr", "delattr", "getattr", "exec", "eval", "compile", "globals", "locals", "vars", "open",
                 "type", "get_ipython", "breakpoint", "input", "exit", "quit"}
BLOCKED_ATTRS = {"checks", "course", "assignments", "grader", "guard", "hidden"}


def _dunder(name):
    return name.startswith("__") and name.endswith("__")


def _root(node):
    """The name an attribute or subscript chain starts from (``a`` in ``a.b[0].c``), or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _locals(func):
    """The names a function binds itself: its arguments and every name it assigns."""
    args = func.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)) and node is not func:
            names |= _locals(node) if isinstance(node, ast.FunctionDef) else {a.arg for a in node.args.args}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _literal(node):
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _import_problem(node):
    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    for module in modules:
        if node.__class__ is ast.ImportFrom and node.level:
            return "a relative import"
        if module.split(".")[0] not in IMPORTABLE or module.startswith(BLOCKED_MODULES):
            return f"an import of {module}"
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" or a.name in BLOCKED_ATTRS for a in node.names):
            return f"an import of {', '.join(a.name for a in node.names)} from {module}"
    return None


def _scan(tree, local=frozenset()):
    """The first problem of the static scan in ``tree`` (module docstring), as a phrase, or None."""
    if isinstance(tree, (ast.FunctionDef, ast.Lambda)):
        local = local | (_locals(tree) if isinstance(tree, ast.FunctionDef) else {a.arg for a in tree.args.args})
        for decorator in getattr(tree, "decorator_list", []):
            if ast.unparse(decorator) not in ("torch.no_grad()", "torch.inference_mode()"):
                return f"the decorator @{ast.unparse(decorator)}"
        for default in tree.args.defaults + [d for d in tree.args.kw_defaults if d is not None]:
            if not _literal(default):
                return f"the default value {ast.unparse(default)} (defaults must be plain numbers or strings)"
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            problem = _scan(node, local)
        elif isinstance(node, (ast.ClassDef, ast.AsyncFunctionDef)):
            problem = f"the definition of {node.name}"
        elif isinstance(node, (ast.Global,)):
            problem = "a global statement"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            problem = _import_problem(node)
        elif isinstance(node, ast.Name) and (node.id in BLOCKED_NAMES or _dunder(node.id)):
            problem = f"the name {node.id}"
        elif isinstance(node, ast.Attribute) and (node.attr in BLOCKED_ATTRS or _dunder(node.attr)):
            problem = f"the attribute .{node.attr}"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete, ast.For, ast.With)):
            targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else
                       [node.target] if not isinstance(node, ast.With) else
                       [i.optional_vars for i in node.items if i.optional_vars is not None])
            problem = None
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, (ast.Attribute, ast.Subscript)) and _root(part) not in local:
                        problem = f"an assignment to {ast.unparse(part)}"
                        break
                if problem:
                    break
        else:
            problem = None
        if problem is None and not isinstance(node, (ast.FunctionDef, ast.Lambda)):
            problem = _scan(node, local)
        if problem:
            line = getattr(node, "lineno", None)
            return problem if "(line" in problem or line is None else f"{problem} (line {line})"
    return None


def _ipython_to_python(source):
    """Turn IPython syntax (%magics, !shell) into plain Python calls, which are then dropped."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    return TransformerManager().transform_cell(source)


def bound_names(source):
    """The names a pristine cell binds at its top level (assignments, imports, definitions)."""
    try:
        tree = ast.parse(_ipython_to_python(source))
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def extract(source, reserved=frozenset(), functions=()):
    """The code to run from a solution cell's ``source``: (code, notes, tampering).

    ``code`` is the kept statements, unparsed; ``notes`` the dropped ones, one phrase each;
    ``tampering`` None, or the phrase that makes the task score zero (module docstring).
    ``functions`` are the task's functions: each must be bound by a ``def``.
    """
    try:
        tree = ast.parse(_ipython_to_python(source))
    except SyntaxError as err:
        return "", [], f"a syntax error (line {err.lineno}: {err.msg})"
    kept, notes, tampering = [], [], None
    for node in tree.body:
        if isinstance(node, ast.Expr) and ast.unparse(node).startswith("get_ipython()."):  # a %magic
            notes.append(f"line {node.lineno} not run by the grader: an IPython magic")
            continue
        problem = _statement_problem(node, reserved, functions)
        if problem is None and not _kept(node):
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring
                notes.append(f"line {node.lineno} not run by the grader: `{ast.unparse(node).splitlines()[0][:60]}`")
            continue
        if problem:  # the statement is dropped, the task scores zero; the rest still runs for later tasks
            tampering = tampering or problem
            continue
        kept.append(node)
    return ast.unparse(ast.Module(body=kept, type_ignores=[])), notes, tampering


def _kept(node):
    """Statements the grader runs: definitions, imports, a literal assigned to plain names."""
    return (isinstance(node, (ast.FunctionDef, ast.Import, ast.ImportFrom)) or
            (isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets)
             and _literal(node.value)))


def _statement_problem(node, reserved, functions):
    """Why a top-level statement is tampering (a phrase with its line), or None."""
    line = node.lineno
    if isinstance(node, ast.FunctionDef):
        names = {node.name}
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        names = set()
        bound = {(a.asname or a.name).split(".")[0] for a in node.names} & set(functions)
        if bound:
            return f"an import bound to the name {sorted(bound)[0]} (line {line}): write it with def"
    elif isinstance(node, ast.Assign):
        names = {t.id for t in node.targets if isinstance(t, ast.Name)}
        if names & set(functions):
            return f"an assignment to {sorted(names & set(functions))[0]} (line {line}): write it with def"
        if any(not isinstance(t, ast.Name) for t in node.targets):
            return f"an assignment to {ast.unparse(node.targets[0])} (line {line})"
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.Delete, ast.ClassDef, ast.Global)):
        return f"the statement `{ast.unparse(node).splitlines()[0][:60]}` (line {line})"
    else:
        names = set()
    clash = sorted(names & set(reserved))
    if clash:
        return f"a new definition of {clash[0]} (line {line}), which the notebook itself defines"
    problem = _scan(ast.Module(body=[node], type_ignores=[]))
    if problem:
        return problem if "(line" in problem else f"{problem} (line {line})"
    return None
