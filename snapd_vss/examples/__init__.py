"""Example writers and the tools the demo uses with them."""
