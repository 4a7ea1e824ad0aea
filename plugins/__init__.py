"""The zoo's built-in components, installed as the package ``zoo_plugins``.

Each module registers its components through the ``zoo.plugins`` entry points in
``pyproject.toml`` — the same way a third-party plugin package does. The core package
``zoo`` imports none of them.
"""
