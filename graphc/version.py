"""graphc's version, in a module of its own so any layer can read it without importing the package's
top level (graphc/__init__.py imports the API, which imports the targets)."""
__version__ = "0.1.0"
