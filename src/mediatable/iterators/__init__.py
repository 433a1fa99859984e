"""Iterators that turn one row into many: video frames, audio chunks, document pages.

Each is a plain class constructed on a local file path with its options; iterating yields dicts
whose keys and column types are given by the class attribute `output_schema`.

Examples:
    >>> FrameIterator.output_schema
    {'pos': Int, 'timestamp': Float, 'frame': Image}
"""

from mediatable.iterators.audio_chunks import AudioChunkIterator
from mediatable.iterators.document_pages import DocumentPageIterator
from mediatable.iterators.frames import FrameIterator

__all__ = ["AudioChunkIterator", "DocumentPageIterator", "FrameIterator"]
