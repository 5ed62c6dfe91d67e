"""safehaven: a gateway between a register of people and the agencies that ask about them."""

__version__ = "0.1.0"
