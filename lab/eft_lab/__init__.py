"""The eft lab: the system run as processes on one machine, and the tools it uses."""
