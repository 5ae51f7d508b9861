"""graphc.kernels: kernel source templates, one folder per target (kernels/<target>/)."""
