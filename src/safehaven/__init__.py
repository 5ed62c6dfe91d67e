"""safehaven: a gateway between a register of people and the agencies that ask it for their details."""

__version__ = "0.1.0"
