"""Simulation: the generated shop, the replay with a virtual clock, the demo and `journey
simulate`, and the simulated readers who open and click."""
