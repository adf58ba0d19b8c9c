__version__ = "0.0.1"

_API = ("load_model", "Upscaler")


def __getattr__(name):
    "`msvar.load_model` and `msvar.Upscaler` (chapter 08b), imported on first use so that `import msvar` stays light."
    if name in _API:
        from msvar import api
        return getattr(api, name)
    raise AttributeError(f"module 'msvar' has no attribute {name!r}")
