"""glitchrun: human-in-the-loop glitch-labelling campaigns on Zooniverse."""

__version__ = "0.1.0"
