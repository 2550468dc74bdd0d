"""Layers: pure functions first, thin `flax.linen` modules over them."""
