"""The plugin contract: the hooks a cconv plugin may implement.

Every hook hands the plugin a `register` callable (the style of simonw/llm):
the plugin calls it once per thing it provides. A plugin is any module or
object with functions marked `@cconv.hookimpl`, found through the entry-point
group "cconv" or registered with `cconv.plugins.register_plugin(obj)`.

Built-ins register through these same hooks, before any other plugin, so a
plugin may replace a built-in only by passing `override=True`; any other
duplicate name is an error that names both plugins. See docs/plugins.md.
"""
import pluggy

hookspec = pluggy.HookspecMarker("cconv")
hookimpl = pluggy.HookimplMarker("cconv")

__all__ = ["hookspec", "hookimpl", "register_layers", "register_kernels",
           "register_optimizers", "register_weight_loaders"]


@hookspec
def register_layers(register):
    """Register layer classes (subclasses of `cconv.nn.base.Layer`).

    Args:
        register: ``register(layer_class, override=False)``. The registry
            name is ``layer_class.type_name``: the name written in saved
            configs, so `cconv.load` finds the class again. ``override=True``
            replaces a layer of the same name registered earlier (a built-in).

    Example::

        @cconv.hookimpl
        def register_layers(register):
            register(Swish)
    """


@hookspec
def register_kernels(register):
    """Register kernels: named implementations of an op (conv2d, max_pool2d, ...).

    Args:
        register: ``register(op, name, function, supports=None, priority=0,
            override=False, description="")``.

            - ``op``: the op name, as in `cconv.ops` ("conv2d", "conv2d_backward",
              "max_pool2d", ...) or a new one.
            - ``function``: called with the op's arguments, as ``cconv.ops.<op>``
              would be: ``function(x, w, bias, stride=..., padding=..., ...)``.
            - ``supports``: ``supports(*args, **kwargs) -> bool`` given the same
              arguments; None means every call. It must depend only on the
              arrays' shapes and dtypes and on the non-array arguments, because
              the choice is cached per (op, shapes, dtypes, other arguments).
            - ``priority``: the highest-priority kernel that supports a call
              runs (built-ins: 0, the C core; 10, special cases; -100, the
              numpy references). Ties go to the kernel registered first.
            - ``override=True`` replaces a kernel of the same op and name.

    Example::

        @cconv.hookimpl
        def register_kernels(register):
            register("conv2d", "winograd_3x3", winograd_conv2d, priority=20,
                     supports=lambda x, w, *a, stride=1, dilation=1, groups=1, **k:
                         w.shape[2:] == (3, 3) and stride in (1, (1, 1))
                         and dilation in (1, (1, 1)) and groups == 1)
    """


@hookspec
def register_optimizers(register):
    """Register optimizer classes.

    Args:
        register: ``register(optimizer_class, name=None, override=False)``. The
            name defaults to the class name in lower case ("sgd", "adam");
            lookups ignore case. The class follows the contract of
            `cconv.optim.Optimizer`: ``cls(net_or_param_groups, lr=..., **hyper)``
            with ``.step()`` and ``.zero_grad()``.

    Example::

        @cconv.hookimpl
        def register_optimizers(register):
            register(Lion)              # get_optimizer_class("lion") -> Lion
    """


@hookspec
def register_weight_loaders(register):
    """Register weight loaders: readers of pretrained weight files.

    Args:
        register: ``register(name, function, suffixes=(), override=False,
            description="")``. ``function(path) -> dict[str, numpy.ndarray]``
            reads one file; ``suffixes`` (".safetensors", ".npz", ...) are the
            file endings it handles, for `cconv.plugins.find_weight_loader(path)`.

    Example::

        @cconv.hookimpl
        def register_weight_loaders(register):
            register("npz", lambda path: dict(numpy.load(path)), suffixes=[".npz"])
    """
