"""The model core: heads, inspection and the compiled engine."""
