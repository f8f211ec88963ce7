"""audimeter: realtime listener analytics for Icecast and SHOUTcast, delivered to Matomo."""

__version__ = "0.1.0"
