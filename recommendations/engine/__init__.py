"""The recommendation math: plain numpy, no Django, no Channels."""
