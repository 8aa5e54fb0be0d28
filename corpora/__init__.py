"""Scripts that build evaluation corpora from outside sources (not run by CI)."""
