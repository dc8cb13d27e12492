"""The expression language: elementary functions, the graph, reverse accumulation, the safe parser."""
