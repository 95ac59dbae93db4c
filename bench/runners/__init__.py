"""Runners: who measures a case (in this process, a child process, torchrun ranks, a valgrind worker); see ``base``."""
