"""An embedded Panoptes (Zooniverse API) server: a real HTTP server that panoptes-client and the official
``panoptes`` CLI use unchanged, persisted in SQLite. The wire contract is docs/panoptes-api.md in the
shared docs; ``glitchrun job=serve`` runs it standalone."""

from glitchrun.embedded_panoptes.server import EmbeddedPanoptes

__all__ = ["EmbeddedPanoptes"]
