"""cascade backtester: liquidation cascades on crypto perpetual futures.

Import cheaply: this module imports nothing heavy, so the CLI starts fast.
"""

__version__ = "0.1.0"
