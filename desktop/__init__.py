"""The Collagen desktop application: the only package that knows canvas and inference."""
