"""graphc.frontends: parsers that turn files into graphc.ir.Graph."""
