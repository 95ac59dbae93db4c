"""Commands of ``python -m bench``: each a module with ``main(argv) -> exit status``."""
