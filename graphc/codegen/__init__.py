"""The code-generation layer every compiled target shares (issue 10).

lower.py     planned Program -> LoweredProgram: steps (elementwise runs, copies, library kernels, custom
             kernels), temporaries, the argument table and work estimates, independent of any language
expr.py      the expression IR of a fused elementwise body
formulas.py  every elementwise op's f32 formula, once, in that IR
printer.py   walking an expression body (shared subexpressions bound once); languages supply the hooks
cstyle.py    the C printer of expressions and elementwise loop nests
opencl.py    OpenCL C 1.2: a few overrides of cstyle
triton.py    the Triton printer of the same elementwise steps
Library kernels (matmul, attention, norms, ...) are hand-written per target under kernels/<target>/.
"""
