"""Measurement below export and bench: accuracy and per-class metrics (``metrics``), latency
(``latency``), MAC counts and CPU peaks (``flops``), and the machine a figure came from
(``machine``). Imports nothing heavier than numpy at module level."""
