"""AMDM quality benchmark on a toy model ecosystem (see bench/README_quality.md)."""
