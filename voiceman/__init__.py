"""voiceman: forensic speech analysis — Snakemake DAG + a persistent ZeroMQ inference daemon."""

__version__ = "0.1.0"
