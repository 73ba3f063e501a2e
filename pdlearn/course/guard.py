"""What surrounds every call of a student's function: the library's answers are off limits,
and the library is the same afterwards as before.

    with student_call("forward", forbid=("pdlearn.losses.q_sample",), namespace=fn.__globals__):
        z = fn(x, t, sched, eps)

1. **Forbidden functions.** Each name in ``forbid`` is a library function that would answer
   the task (``pdl.q_sample`` for the forward process). During the call, every binding of
   that object, in every pdlearn module and in the namespace the student's function reads
   its globals from, is replaced by a stand-in that raises ``ImplementYourself``; the
   bindings are put back afterwards. A library function that calls a forbidden one
   internally raises as well, which is the point: ``distill_round`` runs ``distill_loss``.
2. **Tampering.** The functions, classes and modules bound in the watched namespaces
   (every pdlearn module, torch, torch.nn.functional, math, builtins, and the classes
   torch.Tensor and torch.nn.Module) are recorded the first time a namespace is seen.
   After the call each must still be the object recorded; if one is not, every recorded
   binding is restored and the call fails with ``Tampered``. A check therefore cannot be
   switched off (``checks.check_forward = lambda f: None``) or its reference answer
   replaced (``pdl.sampling.ddim_step = ...``) from inside a student's function.

``watch_everything()`` records all of pdlearn at once; the grader calls it before any
student code runs, so that a module first imported later cannot be changed unseen.
"""
import builtins
import contextlib
import importlib
import math
import pkgutil
import sys
import types

import torch

from .errors import ImplementYourself, Tampered

_WATCHED = {}  # label -> (module dict or class, {key: object}) recorded on first sight


def _namespaces():
    """The namespaces whose functions, classes and modules must not change: (label, module dict or class)."""
    found = [(name, vars(module)) for name, module in list(sys.modules.items())
             if module is not None and (name == "pdlearn" or name.startswith("pdlearn."))]
    found += [(m.__name__, vars(m)) for m in (torch, torch.nn.functional, math, builtins)]
    found += [(f"{c.__module__}.{c.__qualname__}", c) for c in (torch.Tensor, torch.nn.Module)]
    return found


def _items(space):
    return space if isinstance(space, dict) else vars(space)


KERNEL_OWNED = {"input", "raw_input", "get_ipython", "display", "help", "exit", "quit", "breakpoint", "copyright",
                "credits", "license"}  # builtins a Jupyter kernel rebinds itself (input, at every cell)


def _recordable(value, key=""):
    return (callable(value) or isinstance(value, types.ModuleType)) and key not in KERNEL_OWNED


_BOUND = {}  # id(object) -> [(label, module dict, key)]: where each recorded object is bound


_SEEN = [0]  # len(sys.modules) at the last record


def _record():
    """Record every namespace not seen before (a module imported since the last call)."""
    if len(sys.modules) == _SEEN[0]:
        return
    _SEEN[0] = len(sys.modules)
    for label, namespace in _namespaces():
        if label in _WATCHED:
            continue
        is_module = isinstance(namespace, dict)  # a class: every attribute, descriptors included
        recorded = {k: v for k, v in _items(namespace).items() if _recordable(v, k) or not is_module}
        _WATCHED[label] = (namespace, recorded)
        if is_module:
            for key, value in recorded.items():
                _BOUND.setdefault(id(value), []).append((label, namespace, key))


def watch_everything():
    """Import every pdlearn module and record it, before any student code runs (the grader's first cell)."""
    import pdlearn

    for info in pkgutil.walk_packages(pdlearn.__path__, "pdlearn."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    _record()


def _changes():
    """Bindings that differ from the record: [(label, key)]."""
    changed = []
    for label, (namespace, recorded) in _WATCHED.items():
        items = _items(namespace)
        for key, value in recorded.items():
            now = items.get(key, _MISSING)
            if now is not value and not _rewrapped(now, value, recorded, key):
                changed.append((label, key))
        if not isinstance(namespace, dict) and len(items) != len(recorded):  # a class: a new attribute shadows
            changed += [(label, key) for key in items if key not in recorded]
    return changed


_MISSING = object()


def _rewrapped(now, value, recorded, key):
    """torch wraps some of its own functions when it first imports torch._dynamo (torch.manual_seed):
    a wrapper whose ``__wrapped__`` is the recorded function is torch's, not a student's. Take it as
    the new record."""
    if getattr(now, "__wrapped__", None) is value and getattr(now, "__module__", "").startswith("torch"):
        recorded[key] = now
        return True
    return False


def _restore():
    for namespace, recorded in _WATCHED.values():
        if isinstance(namespace, dict):
            namespace.update(recorded)
            continue
        for key in [k for k in vars(namespace) if k not in recorded]:  # a class: attribute by attribute
            delattr(namespace, key)
        for key, value in recorded.items():
            if vars(namespace).get(key, _MISSING) is not value:
                setattr(namespace, key, value)


def resolve(dotted):
    """The object named by ``dotted`` ('pdlearn.losses.q_sample'), or None when it does not exist
    (read from the record, so that a changed binding cannot hide the original)."""
    module_name, _, attr = dotted.rpartition(".")
    if module_name not in _WATCHED:
        try:
            importlib.import_module(module_name)
        except ImportError:
            return None
        _record()
    return _WATCHED.get(module_name, ({}, {}))[1].get(attr)


def public_name(obj, dotted):
    """How a reader calls ``obj``: pdl.q_sample when the package exports it, else pdl.<module>.<name>."""
    import pdlearn

    for key, value in vars(pdlearn).items():
        if value is obj:
            return f"pdl.{key}"
    return "pdl." + dotted.removeprefix("pdlearn.")


def _stand_in(task, name):
    def refuse(*args, **kwargs):
        raise ImplementYourself(
            f"`{task}` called {name} (directly or through another library function), which answers this "
            f"task: implement this yourself. While `{task}` is graded the library's own answer is off limits; "
            "pdl.predict, sched.alpha_sigma and torch are there to use")
    refuse.__name__ = refuse.__qualname__ = name.rpartition(".")[2]
    return refuse


def check_unchanged(task):
    """Raise ``Tampered`` (after restoring the record) if anything recorded has changed."""
    changed = _changes()
    if changed:
        _restore()
        shown = ", ".join(f"{label}.{key}" for label, key in changed[:3])
        raise Tampered(f"{shown} changed while `{task}` was checked (and is now restored): a solution may not "
                       "modify the library, torch or the checks, so this check fails")


@contextlib.contextmanager
def student_call(task, forbid=(), namespace=None, verify=True):
    """Run the body as a call of the student's function ``task`` (module docstring). With
    ``verify=False`` the record is not compared afterwards (a training loop calls the student's loss
    hundreds of times, and compares once at its end with ``check_unchanged``)."""
    _record()
    before = _changes() if verify else []
    if before:  # changed outside any student call (for example by a notebook cell): put it back first
        _restore()
    patched = []  # (label, namespace, key, original, stand-in)
    for dotted in forbid:
        obj = resolve(dotted)
        if obj is None:
            continue
        stand_in = _stand_in(task, public_name(obj, dotted))
        bindings = list(_BOUND.get(id(obj), []))
        if namespace is not None:
            bindings += [("the notebook", namespace, k) for k, v in list(namespace.items()) if v is obj]
        for label, ns, key in bindings:
            if ns.get(key, _MISSING) is obj:
                patched.append((label, ns, key, obj, stand_in))
                ns[key] = stand_in
    try:
        yield
    finally:
        changed = [(label, key) for label, ns, key, _, stand_in in patched if ns.get(key, _MISSING) is not stand_in]
        for _, ns, key, value, _ in reversed(patched):
            ns[key] = value
        changed += _changes() if verify else []
        if changed:
            _restore()
    if changed:
        shown = ", ".join(f"{label}.{key}" for label, key in changed[:3])
        raise Tampered(f"`{task}` changed {shown} while it ran: a solution may not modify the library, torch "
                       "or the checks, so this check fails")
    if before:
        shown = ", ".join(f"{label}.{key}" for label, key in before[:3])
        raise Tampered(f"{shown} had been changed before `{task}` was checked (and is now restored): the "
                       "notebook may not modify the library, torch or the checks, so this check fails")
