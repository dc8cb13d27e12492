"""The expression language: elementary functions, the graph, reverse accumulation, evaluation, the safe parser."""
