"""graphc.targets: one code generator / runner per target (ref, c, opencl, triton)."""
