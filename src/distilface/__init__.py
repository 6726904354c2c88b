"""DistilFace: speech-driven facial animation distilled into tiny real-time students."""

__version__ = "0.1.0"
