"""Journey: marketing automation driven by the customer's journey stage."""

__version__ = "0.1.0"
