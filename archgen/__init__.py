"""archgen: spatial accelerator generator (Verilog + cycle model that agree)."""
__version__ = "0.1.0"
