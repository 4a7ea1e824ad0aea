"""DGL's distributed training (DistDGL) for zoo experiments.

- :func:`zoo_plugins.distributed.partition.partition` writes an experiment's graph as
  DistDGL partitions, with the resolved zoo config beside them.
- ``python -m zoo_plugins.distributed.train`` is one DistDGL process (a server, or a
  trainer of the zoo model on sampled blocks), as DGL's ``tools/launch.py`` starts them.
- :func:`zoo_plugins.distributed.launch.launch` starts a whole job on one host.
- :mod:`zoo_plugins.distributed.commands` is the plugin (entry point ``distributed``)
  that adds ``zoo partition`` to the command line.

``docs/distdgl.md`` walks through both the one-host and the multi-machine launch. The
submodules import DGL; this package itself imports nothing.
"""
