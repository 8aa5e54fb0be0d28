"""Reading a corpus: catalog, decoding, feature cache, splits, batches, lyrics."""
