"""Core pieces of ultraface-zoo that need nothing beyond the standard library."""
