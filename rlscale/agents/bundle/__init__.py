"""The policy bundle: a trained PPO policy as plain arrays and JSON, runnable with numpy alone.

One idea per module: :mod:`~rlscale.agents.bundle.format` (the file layout, the
:class:`~rlscale.agents.bundle.format.Bundle` a load returns and what a save takes),
:mod:`~rlscale.agents.bundle.validation` (every check of ``bundle.json`` and ``weights.npz``),
:mod:`~rlscale.agents.bundle.io` (save, load, checksum, ``attach_evaluation``). They import
numpy, the standard library, :mod:`rlscale.configschema`, :mod:`rlscale.metrics` and the runtime
modules of :mod:`rlscale.agents` only; the export of a stable-baselines3 model, which needs
torch, is :mod:`rlscale.training.sb3_export`.
"""
