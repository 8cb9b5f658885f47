"""Measurement below export and bench: accuracy and per-class metrics (``metrics``), latency
(``latency``), MAC counts and CPU peaks (``flops``), the machine a figure came from
(``machine``), calibration and temperature scaling (``calibration``) and the "unknown"
scores, thresholds and their separation (``ood``). Imports nothing heavier than numpy at
module level."""
