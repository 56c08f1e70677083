"""The `zoo` command line: one thin module per command (parse, call the pipeline, print); `main.py` assembles them."""
