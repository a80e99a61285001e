# The corpus modules are inputs of tests/test_*_doctor*.py, not tests or doctests themselves.
collect_ignore_glob = ["*.py"]
