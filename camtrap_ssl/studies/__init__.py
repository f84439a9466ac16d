"""Layer 6: the studies as notebooks (parameters, comparison, report, reference tables, the book)."""
