"""Commands of ``python -m bench``: each a module with ``main(argv) -> exit status``; the modules
named ``gpu_*`` beside ``gpu_check`` are its parts (records, the suite's runs, its own CUDA measurements)."""
