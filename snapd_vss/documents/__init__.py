"""The protocol's XML documents."""
