"""The code-generation layer every compiled target shares (issue 10).

lower.py     planned Program -> LoweredProgram: steps (elementwise runs, copies, library kernels, custom
             kernels), temporaries, the argument table and work estimates, independent of any language
expr.py      the expression IR of a fused elementwise body
formulas.py  every elementwise op's f32 formula, once, in that IR
cstyle.py    the C-like printer of expressions and elementwise loop nests (C; OpenCL by overrides)
triton.py    the Triton printer of the same elementwise steps
Library kernels (matmul, attention, norms, ...) are hand-written per target under kernels/<target>/.
"""
