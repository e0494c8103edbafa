"""modelport benchmarks: each module prints its comparison side by side in one run."""
