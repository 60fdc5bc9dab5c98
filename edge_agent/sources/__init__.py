"""Radio sources: each owns one radio and turns what it hears into ``RawFrame`` values."""
