"""Layer 4, studies: the demo, the scaling study, the benchmarks and the testbed.

They compose everything below; nothing in the library imports them.
"""
