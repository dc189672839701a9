"""Figures in docs/ rendered from the raw data committed in docs/data/
(tools/render-docs): tables between render markers, byte for byte."""
