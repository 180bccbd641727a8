//! Cairn chunkserver (in progress).
