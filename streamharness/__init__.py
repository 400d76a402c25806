"""The umbrella ``streamharness`` command, and nothing else.

It sits above the four packages (``mockllm``, ``reference_server``, ``scenarios``,
``loadtests``) so that dispatching to all of them makes no lower package reach a higher one.
"""
