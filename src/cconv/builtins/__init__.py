"""The built-in plugins: cconv's own layers, kernels, optimizers and weight loaders.

They register through the same hooks as any third-party plugin and are
registered first (see cconv.plugins.BUILTIN_PLUGINS), so a plugin replaces
one of them only with register(..., override=True).
"""
